//! What a hostile neighbour on the LAN or the host cannot do: read the history through file
//! modes the umask chose, reach a Unix socket the operator did not open to them, or turn the
//! discovery port into a reflector, or forge lines in the operator's log (the escaping itself is
//! tested in `server/src/logsafe.rs`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lanchat_tests::{bin_path, ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lanchat-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server with `args` on loopback, not announcing, run under umask 000: the mode of
/// everything it creates is then its own choice, not the umask's.
fn start_under_umask_000(args: &[&str]) -> ServerProcess {
    ServerProcess::start_with(
        Command::new("sh")
            .args(["-c", "umask 000; exec \"$0\" \"$@\""])
            .arg(bin_path("lanchat-server"))
            .args(["--listen", "127.0.0.1:0", "--no-announce"])
            .args(args),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path under `dir` (relative) with its mode, sorted.
fn modes_under(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            out.push((name, mode(&path)));
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn history_files_are_private_whatever_the_umask() {
    let tmp = TempDir::new("hygiene-data");
    let data = tmp.0.join("data");
    let mut server = start_under_umask_000(&[
        "--data-dir",
        data.to_str().unwrap(),
        // Three messages with a history of two: one rotation, so both room files exist.
        "--history",
        "2",
    ]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    for text in ["one", "two", "three"] {
        let ok = ann
            .request(json!({"type":"say","room":"lobby","text":text}))
            .await;
        assert_eq!(ok["type"], "ok", "{ok}");
    }
    let ok = ann
        .request(json!({"type":"topic","room":"lobby","topic":"private"}))
        .await;
    assert_eq!(ok["type"], "ok", "{ok}");
    // A registered nick: accounts.json (issue 15).
    let ok = ann
        .request(json!({"type":"register","secret":"a private secret"}))
        .await;
    assert_eq!(ok["persistent"], true, "{ok}");
    // A clean stop writes and syncs everything queued.
    server.stop();
    assert_eq!(mode(&data), 0o700, "the data dir");
    assert_eq!(
        modes_under(&data),
        [
            ("accounts.json".to_owned(), 0o600),
            ("lock".to_owned(), 0o600),
            ("rooms".to_owned(), 0o700),
            ("rooms/lobby.jsonl".to_owned(), 0o600),
            ("rooms/lobby.jsonl.1".to_owned(), 0o600),
            // The TLS certificate and its key, kept in the data directory.
            ("tls".to_owned(), 0o700),
            ("tls/cert.pem".to_owned(), 0o600),
            ("tls/key.pem".to_owned(), 0o600),
            ("topics.json".to_owned(), 0o600),
        ]
    );
}

/// Connect to the Unix socket at `path` as its owner and register.
fn hello_over_unix(path: &Path) -> Value {
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"{\"type\":\"hello\",\"nick\":\"owner\"}\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn unix_socket_mode_is_0660_or_what_unix_mode_says() {
    let tmp = TempDir::new("hygiene-unix");
    for (flags, expected) in [(&[][..], 0o660), (&["--unix-mode", "0600"][..], 0o600)] {
        let path = tmp.0.join("chat.sock");
        let mut args = vec!["--unix", path.to_str().unwrap()];
        args.extend_from_slice(flags);
        let mut server = start_under_umask_000(&args);
        assert_eq!(server.next_listening(), format!("unix:{}", path.display()));
        // Set before `listening` was printed.
        assert_eq!(mode(&path), expected, "{flags:?}");
        assert_eq!(hello_over_unix(&path)["type"], "welcome", "{flags:?}");
        server.stop();
        assert!(!path.exists(), "the socket file is removed at exit");
    }
}

#[test]
fn a_bad_unix_mode_exits_2_with_one_line() {
    for bad in ["0999", "rw-------", "4777", ""] {
        let out = Command::new(bin_path("lanchat-server"))
            .args(["--listen", "127.0.0.1:0", "--no-announce"])
            .arg(format!("--unix-mode={bad}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{bad:?}: {stderr}");
        assert!(
            stderr.starts_with("lanchat-server: --unix-mode: "),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
}

const DISCOVER: &[u8] = br#"{"type":"discover","protocol":1}"#;

/// Query the discovery port from `socket` until a beacon comes back (UDP may drop one), within
/// `WAIT`; the beacon.
fn query_until_answered(socket: &UdpSocket, port: u16) -> Value {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        socket.send_to(DISCOVER, ("127.0.0.1", port)).unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return serde_json::from_slice(&buf[..n]).unwrap();
        }
    }
    panic!("discover from {:?} never answered", socket.local_addr());
}

#[test]
fn a_discover_flood_from_one_source_is_answered_at_its_rate_and_others_still_are() {
    let port = lanchat_tests::free_udp_port();
    // Announcing once an hour: within the test every beacon is an answer.
    let server = ServerProcess::start_answering(port, &[]);
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    const FLOOD: usize = 2000;
    for _ in 0..FLOOD {
        flooder.send_to(DISCOVER, ("127.0.0.1", port)).unwrap();
    }
    // Another source address is answered. The server reads its socket in order, so once this
    // is answered every query of the flood that reached it has been handled, and on loopback
    // each answer is already in the flooder's buffer.
    let other = UdpSocket::bind("127.0.0.2:0").unwrap();
    let beacon = query_until_answered(&other, port);
    assert_eq!(beacon["port"], server.addr.port());
    let elapsed = started.elapsed();
    flooder.set_nonblocking(true).unwrap();
    let mut answers = 0;
    let mut reflected = 0;
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = flooder.recv_from(&mut buf) {
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)));
        answers += 1;
        reflected += n;
    }
    // 4 at once, then 1 a second.
    let bound = 4 + elapsed.as_secs_f64().ceil() as usize;
    eprintln!(
        "{FLOOD} queries ({} bytes) in {elapsed:?}: {answers} answers ({reflected} bytes)",
        FLOOD * DISCOVER.len()
    );
    assert!(
        (1..=bound).contains(&answers),
        "{answers} answers to {FLOOD} queries in {elapsed:?}; at most {bound}"
    );
    // The flooder is limited, not banned: it is answered again once its bucket refills.
    assert_eq!(
        query_until_answered(&flooder, port)["port"],
        server.addr.port()
    );
}

/// The `client` string of a hello reaches the log escaped: a newline in it cannot start a forged
/// log line, and an escape sequence cannot reach the operator's terminal.
#[tokio::test]
async fn a_client_string_cannot_forge_log_lines() {
    let server = ServerProcess::start(&[]);
    let forged = "2026-11-30T00:00:00.000000Z  INFO lanchat_server: forged";
    let mut c = TestClient::connect(server.addr).await;
    let hello = json!({"type":"hello","nick":"mallory","client":format!("x\n{forged}\u{1b}[2J")});
    assert_eq!(c.request(hello).await["type"], "welcome");
    c.sync().await;
    // The log line is written before the welcome is read; the pipe reader may lag a little.
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let log = server.stderr_text();
        if log.contains("mallory") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let line = log
        .lines()
        .find(|l| l.contains("registered") && l.contains("mallory"))
        .unwrap_or_else(|| panic!("no registered line in:\n{log}"));
    assert!(line.contains("\\n2026-11-30"), "{line}");
    assert!(line.contains("\\u{1b}[2J"), "{line}");
    assert!(!log.lines().any(|l| l.starts_with(forged)), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}
