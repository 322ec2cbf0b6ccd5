//! A client end of an in-process session, speaking JSON lines.

use std::sync::Arc;
use std::time::Duration;

use lanchat_server::admission::Source;
use lanchat_server::session::serve;
use lanchat_server::{Config, Peer, Shared};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for one line. Under a paused clock this is virtual time, so it is long enough
/// for any of the server's timers and costs nothing.
pub const WAIT: Duration = Duration::from_secs(3600);

/// One client's end of a connection.
pub struct Wire {
    lines: Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
}

impl Wire {
    pub fn new(
        reader: impl AsyncRead + Unpin + Send + 'static,
        writer: impl AsyncWrite + Unpin + Send + 'static,
    ) -> Self {
        let reader: Box<dyn AsyncRead + Unpin + Send> = Box::new(reader);
        Wire {
            lines: BufReader::new(reader).lines(),
            writer: Box::new(writer),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_raw(&frame.to_string()).await;
    }

    pub async fn send_raw(&mut self, line: &str) {
        self.send_raw_bytes(format!("{line}\n").as_bytes()).await;
    }

    /// Bytes as they are, with no newline added.
    pub async fn send_raw_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
        // Over TLS, sends the records rustls still holds; nothing over TCP or duplex.
        self.writer.flush().await.expect("flush");
    }

    /// The next line, or `None` at the close.
    pub async fn try_recv(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line or the close in time")
            .ok()??;
        Some(serde_json::from_str(&line).expect("the server sends JSON"))
    }

    pub async fn recv(&mut self) -> Value {
        self.try_recv().await.expect("a line, not the close")
    }

    /// The next frame of type `kind`, skipping others.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// The next reply (an `ok` or an `error`), skipping events.
    pub async fn expect_reply(&mut self) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == "ok" || v["type"] == "error" {
                return v;
            }
        }
    }

    /// Every line up to the close.
    pub async fn read_to_close(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.try_recv().await {
            out.push(v);
        }
        out
    }

    /// Register as `nick`; returns the welcome.
    pub async fn hello(&mut self, nick: &str) -> Value {
        self.hello_with(json!({"type":"hello","nick":nick})).await
    }

    /// Send this `hello`; returns the welcome it must get.
    pub async fn hello_with(&mut self, hello: Value) -> Value {
        self.send(hello).await;
        let welcome = self.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        welcome
    }

    /// A ping round trip: everything the server sent before it has been read once it returns.
    pub async fn sync(&mut self) -> Vec<Value> {
        self.send(json!({"type":"ping","id":"sync"})).await;
        let mut before = Vec::new();
        loop {
            let v = self.recv().await;
            if v["type"] == "ok" && v["re"] == "sync" {
                return before;
            }
            before.push(v);
        }
    }
}

/// A server's shared state with no listener: sessions are started by [`Server::connect`].
pub struct Server {
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Self::with_shared(Shared::new(config))
    }

    /// A server over shared state made by the test (with a store, for example).
    pub fn with_shared(shared: Arc<Shared>) -> Self {
        Server {
            shared,
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// A new session over an in-memory pipe, served exactly as an accepted socket is.
    pub fn connect(&mut self) -> Wire {
        self.connect_from(Source::Unknown)
    }

    /// [`Server::connect`] as if from `source` (an address, for the per-address rules).
    pub fn connect_from(&mut self, source: Source) -> Wire {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (r, w) = tokio::io::split(theirs);
        let permit = self.shared.admit(source).expect("a free slot");
        self.tasks.push(tokio::spawn(serve(
            r,
            w,
            Peer(None),
            self.shared.clone(),
            self.shutdown.clone(),
            permit,
        )));
        let (r, w) = tokio::io::split(ours);
        Wire::new(r, w)
    }

    pub async fn registered(&mut self, nick: &str) -> Wire {
        let mut wire = self.connect();
        wire.hello(nick).await;
        wire
    }
}
