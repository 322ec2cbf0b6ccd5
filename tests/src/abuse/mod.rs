//! Hostile clients, and the honest ones who share the server with them (issue 14).
//!
//! Each attack of [`attacks`] reproduces one finding of the abuse-resistance issue against a
//! server at a loopback address, from its own `127.0.0.x` source addresses, for a bounded time,
//! and returns an [`Outcome`]: what the attacker achieved, in counts. [`honest::Honest`] runs in
//! the same room meanwhile (a writer at a person's pace, a reader that checks every message
//! arrives once and in order, and a pinger) and reports whether it was ever dropped or limited
//! and its latencies.
//!
//! The e2e suite (`tests/e2e/abuse.rs`) asserts on both; `lanchat-abuse` prints them as a table,
//! so the same attacks measure any server binary, an old one included, before and after a change.
//! Nothing here sends to anything but loopback addresses, and every loop is bounded in time.

pub mod attacks;
pub mod honest;
pub mod scenario;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

/// Longest line an abuse connection reads: more than any server line.
const MAX_LINE: usize = 4 << 20;

/// The server under attack.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its chat address (loopback).
    pub addr: SocketAddr,
    /// Its discovery port on the same host, if the attacks on discovery should run.
    pub udp: Option<SocketAddr>,
    /// The room honest users talk in, and attackers aim at.
    pub room: String,
    /// The server's password, when it has one (honest users know it; attackers guess).
    pub password: Option<String>,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Target {
        Target {
            addr,
            udp: None,
            room: "lobby".into(),
            password: None,
        }
    }

    /// A `hello` as `nick`, with the password when there is one.
    pub fn hello(&self, nick: &str) -> Value {
        let mut hello = serde_json::json!({"type": "hello", "nick": nick, "id": "hello"});
        if let Some(p) = &self.password {
            hello["password"] = p.as_str().into();
        }
        hello
    }
}

/// What an attack achieved, as named counts (`accepted`, `rate_limited`, `refused`, ...), over
/// `secs` seconds of attack.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub finding: u8,
    pub name: &'static str,
    pub secs: f64,
    pub counts: BTreeMap<String, u64>,
}

impl Outcome {
    fn new(finding: u8, name: &'static str) -> Outcome {
        Outcome {
            finding,
            name,
            ..Outcome::default()
        }
    }

    pub fn add(&mut self, what: &str, n: u64) {
        *self.counts.entry(what.to_owned()).or_default() += n;
    }

    /// A count, 0 when never added.
    pub fn get(&self, what: &str) -> u64 {
        self.counts.get(what).copied().unwrap_or(0)
    }

    /// A count per second of attack.
    pub fn rate(&self, what: &str) -> f64 {
        self.get(what) as f64 / self.secs.max(1e-9)
    }

    /// `name=count` pairs on one line.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "#{} {} ({:.1} s): {}",
            self.finding,
            self.name,
            self.secs,
            counts.join(" ")
        )
    }
}

/// The `n`-th attacker address: `127.0.<block>.<n>`, away from 127.0.0.1 where the honest users
/// are. `block` keeps concurrent attacks apart.
pub fn attacker_ip(block: u8, n: u8) -> IpAddr {
    IpAddr::from([127, 0, block, n.max(1)])
}

/// One line-oriented connection that never panics: every failure is an `Err` or a `None`, so an
/// attack on a server that drops it goes on counting.
pub struct Conn {
    reader: FramedRead<OwnedReadHalf, LinesCodec>,
    writer: FramedWrite<OwnedWriteHalf, LinesCodec>,
}

impl Conn {
    /// Connect to `addr` from `from` (any local port).
    pub async fn connect_from(addr: SocketAddr, from: Option<IpAddr>) -> std::io::Result<Conn> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(Conn::new(stream))
    }

    pub fn new(stream: TcpStream) -> Conn {
        let (r, w) = stream.into_split();
        Conn {
            reader: FramedRead::new(r, LinesCodec::new_with_max_length(MAX_LINE)),
            writer: FramedWrite::new(w, LinesCodec::new_with_max_length(MAX_LINE)),
        }
    }

    /// Queue a line without flushing (for pipelining); `flush` sends.
    pub async fn feed(&mut self, frame: &Value) -> std::io::Result<()> {
        self.writer
            .feed(frame.to_string())
            .await
            .map_err(std::io::Error::other)
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        SinkExt::<String>::flush(&mut self.writer)
            .await
            .map_err(std::io::Error::other)
    }

    pub async fn send(&mut self, frame: &Value) -> std::io::Result<()> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// The next line within `wait`; `None` at end of stream, on an error or a timeout.
    /// Cancel-safe (it can sit in a `select!`).
    pub async fn next_line(&mut self, wait: Duration) -> Option<String> {
        match tokio::time::timeout(wait, self.reader.next()).await {
            Ok(Some(Ok(line))) => Some(line),
            _ => None,
        }
    }

    /// The next frame within `wait`, as [`Conn::next_line`]; a line that is not JSON is `Null`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let line = self.next_line(wait).await?;
        Some(serde_json::from_str(&line).unwrap_or_default())
    }

    /// Read until the reply to `id` (or an error or `bye` for it), within `wait`.
    pub async fn reply(&mut self, id: &Value, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let v = self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if v.get("re") == Some(id) || v["type"] == "bye" {
                return Some(v);
            }
            if v["type"] == "ping" {
                let _ = self.send(&serde_json::json!({"type": "pong"})).await;
            }
        }
    }

    /// Connect, say hello as `nick`, and wait for the welcome; `Err` with what came instead.
    pub async fn register(
        target: &Target,
        from: Option<IpAddr>,
        nick: &str,
    ) -> Result<Conn, String> {
        let mut c = Conn::connect_from(target.addr, from)
            .await
            .map_err(|e| e.to_string())?;
        c.send(&target.hello(nick))
            .await
            .map_err(|e| e.to_string())?;
        match c.reply(&"hello".into(), Duration::from_secs(5)).await {
            Some(w) if w["type"] == "welcome" => Ok(c),
            Some(other) => Err(other.to_string()),
            None => Err("no welcome".into()),
        }
    }
}
