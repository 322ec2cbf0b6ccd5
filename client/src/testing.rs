//! Test helpers: a dialer of in-memory connections, and the server's end of one.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::io::{
    AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf,
};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::link::{Dialer, Stream};

/// How long a test waits for anything (a paused clock reaches it only when all else is stuck).
pub const T: Duration = Duration::from_secs(5);

/// Refuses the first `refusals` dials, then hands the link one end of a new `duplex` per dial
/// and the test the other. Notes when each dial happened.
pub struct FakeDialer {
    refusals: usize,
    /// How many nodes it stands for (see [`Dialer::next_node`]), and the one dialled.
    nodes: usize,
    node: usize,
    servers: mpsc::UnboundedSender<DuplexStream>,
    dials: Arc<Mutex<Vec<Instant>>>,
}

pub type Servers = mpsc::UnboundedReceiver<DuplexStream>;
pub type Dials = Arc<Mutex<Vec<Instant>>>;

pub fn fake_dialer(refusals: usize) -> (Box<dyn Dialer>, Servers, Dials) {
    fake_nodes(refusals, 1)
}

/// [`fake_dialer`] standing for `nodes` nodes of a cluster: `fake-1`, `fake-2`, ...
pub fn fake_nodes(refusals: usize, nodes: usize) -> (Box<dyn Dialer>, Servers, Dials) {
    let (tx, servers) = mpsc::unbounded_channel();
    let dials = Arc::new(Mutex::new(Vec::new()));
    let dialer = FakeDialer {
        refusals,
        nodes,
        node: 0,
        servers: tx,
        dials: dials.clone(),
    };
    (Box::new(dialer), servers, dials)
}

impl fmt::Display for FakeDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.nodes {
            1 => f.write_str("fake"),
            _ => write!(f, "fake-{}", self.node + 1),
        }
    }
}

impl Dialer for FakeDialer {
    fn dial(&mut self) -> BoxFuture<'_, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            self.dials.lock().unwrap().push(Instant::now());
            if self.refusals > 0 {
                self.refusals -= 1;
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
            }
            let (client, server) = tokio::io::duplex(64 * 1024);
            let _ = self.servers.send(server);
            Ok(Box::new(client) as Box<dyn Stream>)
        })
    }

    fn next_node(&mut self) -> bool {
        self.node = (self.node + 1) % self.nodes;
        self.nodes > 1
    }
}

/// The server's end of a `duplex` stream: JSON lines in, text lines out.
pub struct FakeServer {
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    write: WriteHalf<DuplexStream>,
}

impl FakeServer {
    pub fn new(stream: DuplexStream) -> Self {
        let (read, write) = tokio::io::split(stream);
        FakeServer {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    /// The next request; `None` once the client hung up.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(T).await
    }

    /// The next request within `wait` (for clients that are quiet for minutes of a paused clock).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let line = timeout(wait, self.lines.next_line()).await.ok()?.ok()??;
        Some(serde_json::from_str(&line).expect("the client sends JSON"))
    }

    /// The next request, which must come.
    pub async fn recv(&mut self) -> Value {
        self.next().await.expect("a request")
    }

    pub async fn send(&mut self, line: &str) {
        let line = format!("{line}\n");
        // The client may have hung up; the test sees that elsewhere.
        let _ = self.write.write_all(line.as_bytes()).await;
    }

    /// Answer `request` with `frame`, adding its `re`.
    pub async fn answer(&mut self, request: &Value, mut frame: Value) {
        frame["re"] = request["id"].clone();
        self.send(&frame.to_string()).await;
    }

    /// Answer the hello with a welcome to `rooms` under a rate limit of `burst` and `per_sec`;
    /// returns the hello.
    pub async fn welcome(&mut self, rooms: &[&str], burst: u32, per_sec: u32) -> Value {
        let hello = self.recv().await;
        assert_eq!(hello["type"], "hello");
        let limits = json!({"max_line": 16384, "max_text": 4096, "rate_burst": burst,
            "rate_per_sec": per_sec, "ping_interval_s": 60});
        let frame = json!({"type": "welcome", "protocol": 1, "server": "fake/1", "name": "office",
            "session": "s1", "nick": hello["nick"], "rooms": rooms, "motd": "", "limits": limits});
        self.answer(&hello, frame).await;
        hello
    }
}
