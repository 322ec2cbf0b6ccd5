//! End-to-end test harness and load generator support for lanchat.
//!
//! - [`ServerProcess`] starts the real `lanchat-server` binary on `127.0.0.1:0`, reads its
//!   `listening` lines and its `tls_sha256` line, and kills it on drop. Each server gets its own
//!   `XDG_STATE_HOME` (removed on drop), so the certificate it makes never lands in the real home.
//! - [`TestClient`] speaks the protocol over a real socket, plain or TLS
//!   ([`TestClient::connect_tls`], pinned to a fingerprint); every wait is bounded by a timeout.
//! - [`browser::Browser`] drives headless Chromium through chromedriver for the web chat.
//! - [`bin_path`] finds workspace binaries (cargo only sets `CARGO_BIN_EXE_*` for the package
//!   under test): an override variable first, then the workspace target directory.
//! - [`ws`]: a WebSocket client (and a one-request HTTP client) for the web transport.

pub mod abuse;
pub mod browser;
pub mod nats;
pub mod tmux;
pub mod ws;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader as AsyncBufReader, ReadHalf,
    WriteHalf,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Path of a workspace binary: `$LANCHAT_SERVER_BIN` / `$LANCHAT_CLIENT_BIN` / `$LANCHAT_LOAD_BIN`
/// when set, else `<target>/debug/<name>`. Panics with the command to run when it is missing.
pub fn bin_path(name: &str) -> PathBuf {
    let var = match name {
        "lanchat-server" => Some("LANCHAT_SERVER_BIN"),
        "lanchat" => Some("LANCHAT_CLIENT_BIN"),
        "lanchat-load" => Some("LANCHAT_LOAD_BIN"),
        _ => None,
    };
    if let Some(p) = var.and_then(std::env::var_os) {
        return PathBuf::from(p);
    }
    let path = target_dir().join("debug").join(name);
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target"),
    }
}

/// The root of the workspace (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind udp 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lanchat-e2e-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `lanchat-server` with `args` (on loopback, not announcing, its certificate under `state`)
/// until it exits by itself, as a start that must fail does; killed and failed after [`WAIT`].
pub fn run_server_to_exit(args: &[&str], state: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(bin_path("lanchat-server"))
        .args(["--listen", "127.0.0.1:0", "--no-announce"])
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env_remove("LANCHAT_MAX_LINE")
        .env_remove("LANCHAT_MAX_TEXT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lanchat-server");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait for lanchat-server").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?}: still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("lanchat-server's output")
}

/// A running `lanchat-server`, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// The first TCP listener's address.
    pub addr: SocketAddr,
    /// Every `listening ...` line read so far, without the prefix.
    pub listening: Vec<String>,
    /// `listening` lines read (while looking for `tls_sha256`) but not yet returned by
    /// [`ServerProcess::next_listening`].
    unreturned: VecDeque<String>,
    /// The certificate's fingerprint from the `tls_sha256 <hex>` line; `None` with `--no-tls`.
    pub tls_sha256: Option<String>,
    stdout_lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The server's own `XDG_STATE_HOME`, unless the caller gave one.
    _state_home: Option<TempDir>,
}

impl ServerProcess {
    /// Start with `--listen 127.0.0.1:0 --no-announce` and `args`.
    pub fn start(args: &[&str]) -> ServerProcess {
        let mut all = vec!["--listen", "127.0.0.1:0", "--no-announce"];
        all.extend_from_slice(args);
        Self::start_raw(&all)
    }

    /// A server on loopback whose discovery port is `port`, announcing every `interval` seconds.
    pub fn start_announcing(port: u16, interval: &str, extra: &[&str]) -> ServerProcess {
        let port = port.to_string();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--announce-port",
            &port,
            "--announce-interval",
            interval,
        ];
        args.extend_from_slice(extra);
        Self::start_raw(&args)
    }

    /// A server whose beacons within a test can only be answers: it announces once an hour.
    pub fn start_answering(port: u16, extra: &[&str]) -> ServerProcess {
        Self::start_announcing(port, "3600", extra)
    }

    /// Start with exactly `args`; the first `listening` line must be a TCP address.
    pub fn start_raw(args: &[&str]) -> ServerProcess {
        Self::start_with(Command::new(bin_path("lanchat-server")).args(args))
    }

    /// Start a prepared command (for extra environment or a `ulimit` wrapper). Unless the command
    /// sets `XDG_STATE_HOME`, the server gets a fresh one of its own; unless it has `--no-tls`,
    /// the `tls_sha256` line is read (after every `listening` line) before this returns.
    pub fn start_with(cmd: &mut Command) -> ServerProcess {
        let has_env =
            |cmd: &Command, name: &str| cmd.get_envs().any(|(k, v)| k == name && v.is_some());
        let tls = !has_env(cmd, "LANCHAT_NO_TLS")
            && !cmd
                .get_args()
                .any(|a| a.to_string_lossy().contains("--no-tls"));
        let state_home = (!has_env(cmd, "XDG_STATE_HOME")).then(|| TempDir::new("state"));
        if let Some(dir) = &state_home {
            cmd.env("XDG_STATE_HOME", dir.path());
        }
        let mut child = cmd
            .env_remove("LANCHAT_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lanchat-server");
        let stdout_lines = spawn_line_reader(child.stdout.take().expect("piped stdout"));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().expect("piped stderr");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    if s.len() == 200 {
                        s.pop_front();
                    }
                    s.push_back(line);
                }
            });
        }
        let mut server = ServerProcess {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            listening: Vec::new(),
            unreturned: VecDeque::new(),
            tls_sha256: None,
            stdout_lines,
            stderr,
            _state_home: state_home,
        };
        let first = server.next_listening();
        server.addr = first
            .parse()
            .unwrap_or_else(|_| panic!("first listener is not TCP: {first}"));
        while tls && server.tls_sha256.is_none() {
            let line = server.next_line("tls_sha256");
            match line.strip_prefix("tls_sha256 ") {
                Some(hex) => server.tls_sha256 = Some(hex.to_owned()),
                None => {
                    let rest = Self::listening_of(&line);
                    server.listening.push(rest.clone());
                    server.unreturned.push_back(rest);
                }
            }
        }
        server
    }

    /// Wait for the next `listening X` line and return X.
    pub fn next_listening(&mut self) -> String {
        if let Some(rest) = self.unreturned.pop_front() {
            return rest;
        }
        let rest = Self::listening_of(&self.next_line("listening"));
        self.listening.push(rest.clone());
        rest
    }

    fn listening_of(line: &str) -> String {
        line.strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"))
            .to_owned()
    }

    /// The next line on stdout; panics (with stderr) if none comes within [`WAIT`].
    fn next_line(&mut self, what: &str) -> String {
        self.stdout_lines.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "lanchat-server printed no {what} line; stderr:\n{}",
                self.stderr_text()
            )
        })
    }

    /// The fingerprint the server printed; panics if it runs without TLS.
    pub fn fingerprint(&self) -> &str {
        self.tls_sha256
            .as_deref()
            .expect("the server printed a tls_sha256 line")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_text(&self) -> String {
        let s = self.stderr.lock().unwrap();
        s.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM)
    }

    /// SIGTERM, then assert the server exits with status 0 within the documented 5 s.
    pub fn stop(&mut self) {
        self.sigterm();
        let status = self
            .wait_exit(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM:\n{}", self.stderr_text()));
        assert!(status.success(), "{status:?}:\n{}", self.stderr_text());
    }

    /// SIGKILL, as a crash or power cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the server in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        proc_rss_kib(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process in KiB (0 if unknown).
pub fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn spawn_line_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A protocol client over a real socket for tests, plain TCP (`S` = `TcpStream`) or TLS. Events
/// read while waiting for a reply are kept and returned by later `recv`/`expect_event` calls, so
/// nothing is lost.
pub struct TestClient<S = TcpStream> {
    reader: AsyncBufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
    pending: VecDeque<Value>,
    next_id: u64,
    pub nick: String,
    /// Over TLS, the certificate the server presented in the handshake (DER).
    pub peer_certificate: Option<Vec<u8>>,
}

/// A [`TestClient`] over TLS.
pub type TlsClient = TestClient<TlsStream<TcpStream>>;

impl TestClient<TlsStream<TcpStream>> {
    /// Connect and finish a TLS handshake that trusts only the certificate whose SHA-256 is
    /// `fingerprint` (lowercase or uppercase hex): see `lanchat_protocol::pin`.
    pub async fn connect_tls(addr: SocketAddr, fingerprint: &str) -> TlsClient {
        let stream = Self::handshake(addr, fingerprint)
            .await
            .expect("TLS handshake with the pinned certificate");
        let presented = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        let mut client = Self::from_stream(stream);
        client.peer_certificate = presented;
        client
    }

    /// Connect and try the pinned handshake; the error when it fails (a certificate that is not
    /// the pinned one, a server that does not speak TLS).
    pub async fn handshake(
        addr: SocketAddr,
        fingerprint: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        use lanchat_protocol::pin;
        let pin = pin::Fingerprint::parse(fingerprint).expect("a fingerprint is 64 hex digits");
        let connector = tokio_rustls::TlsConnector::from(Arc::new(pin::client_config(pin)));
        let name = rustls::pki_types::ServerName::try_from(pin::SERVER_NAME).expect("a DNS name");
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")?;
        tokio::time::timeout(WAIT, connector.connect(name, stream))
            .await
            .expect("TLS handshake timed out")
    }

    /// Connect over TLS and register; returns the welcome.
    pub async fn hello_tls(addr: SocketAddr, fingerprint: &str, nick: &str) -> (TlsClient, Value) {
        let mut c = Self::connect_tls(addr, fingerprint).await;
        let welcome = c.request(json!({"type": "hello", "nick": nick})).await;
        assert_eq!(welcome["type"], "welcome", "hello as {nick}: {welcome}");
        c.nick = nick.to_owned();
        (c, welcome)
    }
}

impl TestClient<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> TestClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self::from_stream(stream)
    }

    /// Connect from a given local address (a `127.x.y.z` of its own, for the per-address rules).
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> TestClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind a loopback address");
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self::from_stream(stream)
    }

    /// Connect and register; returns the welcome.
    pub async fn hello(addr: SocketAddr, nick: &str) -> (TestClient, Value) {
        let mut c = TestClient::connect(addr).await;
        let welcome = c.request(json!({"type": "hello", "nick": nick})).await;
        assert_eq!(welcome["type"], "welcome", "hello as {nick}: {welcome}");
        c.nick = nick.to_owned();
        (c, welcome)
    }

    /// The socket itself (for socket options such as SO_LINGER); buffered input is dropped.
    pub fn into_stream(self) -> TcpStream {
        self.reader.into_inner().unsplit(self.writer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TestClient<S> {
    /// Wrap an already connected stream.
    pub fn from_stream(stream: S) -> TestClient<S> {
        let (r, w) = tokio::io::split(stream);
        TestClient {
            reader: AsyncBufReader::new(r),
            writer: w,
            pending: VecDeque::new(),
            next_id: 1,
            nick: String::new(),
            peer_certificate: None,
        }
    }

    /// Write raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
        // Over TLS, sends the records rustls still holds; nothing over TCP.
        self.writer.flush().await.expect("flush");
    }

    /// Send one frame (a line is added).
    pub async fn send(&mut self, frame: Value) {
        let mut line = serde_json::to_vec(&frame).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// Read the next line as JSON (a queued event first). Panics on timeout or EOF.
    pub async fn recv(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        self.read_frame().await.expect("connection closed")
    }

    /// The next frame if one starts within `limit` (for waits longer than [`WAIT`], such as a
    /// recovery); panics at EOF as [`TestClient::recv`] does.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Some(v);
        }
        // `fill_buf` consumes nothing: a timeout loses no part of a line.
        // An error is for `recv` to report.
        let _filled = tokio::time::timeout(limit, self.reader.fill_buf())
            .await
            .ok()?;
        Some(self.recv().await)
    }

    /// Read the next line from the socket, or `None` at EOF. Panics on timeout.
    pub async fn read_frame(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.nick))
            .ok()?;
        if n == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "server line without LF: {line:?}");
        Some(
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad server line {line:?}: {e}")),
        )
    }

    /// Send a request with a fresh id (unless it has one) and return its reply; events that
    /// arrive first are kept for later.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        if frame.get("id").is_none() {
            frame["id"] = json!(self.next_id);
            self.next_id += 1;
        }
        let id = frame["id"].clone();
        self.send(frame).await;
        self.reply_to(&id).await
    }

    /// Wait for the reply whose `re` is `id`, keeping events.
    pub async fn reply_to(&mut self, id: &Value) -> Value {
        loop {
            let v = self
                .read_frame()
                .await
                .expect("connection closed before reply");
            if v.get("re") == Some(id) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    /// The next frame of type `ty`, skipping (and dropping) `ping`s only; any other frame first
    /// is a test failure.
    pub async fn expect_event(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
            assert_eq!(v["type"], "ping", "{}: expected {ty}, got {v}", self.nick);
        }
    }

    /// Skip frames until one of type `ty` arrives.
    pub async fn skip_until(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Take the frames queued so far (read while waiting for replies).
    pub fn drain_pending(&mut self) -> Vec<Value> {
        self.pending.drain(..).collect()
    }

    /// A round trip: once `ping`'s reply arrives, everything the server sent this client before
    /// it has arrived too.
    pub async fn sync(&mut self) {
        let r = self.request(json!({"type": "ping"})).await;
        assert_eq!(r["type"], "ok");
    }

    /// Assert nothing but what `sync` proves: no frame is waiting beyond the queued ones.
    pub async fn assert_quiet(&mut self) {
        self.sync().await;
        assert!(
            self.pending.is_empty(),
            "{}: unexpected frames {:?}",
            self.nick,
            self.pending
        );
    }

    /// Read until EOF, returning what came; panics if the server does not close in time.
    pub async fn read_to_close(&mut self) -> Vec<Value> {
        let mut out: Vec<Value> = self.pending.drain(..).collect();
        while let Some(v) = self.read_frame().await {
            out.push(v);
        }
        out
    }
}
