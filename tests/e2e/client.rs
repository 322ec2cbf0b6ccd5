//! The `lanchat` terminal client against the real server: scripted mode (two clients talking,
//! line by line), `--json` output, reconnection across a server restart with no message lost, and
//! the interactive client driven in a real terminal through tmux.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use lanchat_tests::tmux::Tmux;
use lanchat_tests::{bin_path, free_udp_port, ServerProcess, TempDir, TestClient, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// `lanchat` with `data` as its XDG data and config homes (nothing of the real home is read or
/// written) and stdin and stdout piped.
pub fn lanchat_in(data: &Path) -> Command {
    let mut command = Command::new(bin_path("lanchat"));
    command
        .env("XDG_DATA_HOME", data)
        .env("XDG_CONFIG_HOME", data.join("config"))
        .env_remove("LANCHAT_NICK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Start `command` (stdout piped) and forward its stdout, line by line, to the receiver.
pub fn spawn_reading(command: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = command.spawn().expect("start lanchat");
    let (tx, lines) = mpsc::channel(10_000);
    let stdout = child.stdout.take().expect("piped stdout");
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// A `lanchat` process in scripting mode: stdin piped, stdout read line by line.
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far (for failure messages and whole-output checks).
    seen: Vec<String>,
    name: String,
    /// Its own `XDG_DATA_HOME` (known servers, input history), so no test writes to the real home.
    _data: TempDir,
}

impl Script {
    fn start(addr: &str, nick: &str, extra: &[&str]) -> Script {
        let data = TempDir::new("script-data");
        let mut command = lanchat_in(data.path());
        command
            .arg(addr)
            .args(["--nick", nick])
            .args(extra)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped());
        let (mut child, lines) = spawn_reading(&mut command);
        let stderr = child.stderr.take().expect("piped stderr");
        let who = nick.to_owned();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[{who} stderr] {line}");
            }
        });
        Script {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            name: nick.to_owned(),
            _data: data,
        }
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to lanchat");
        stdin.flush().await.expect("flush");
    }

    /// The next stdout line matching `pred` (earlier lines are kept in `seen`).
    async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = match timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.lines.recv(),
            )
            .await
            {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "{}: output ended before {what}; output:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
                Err(_) => panic!(
                    "{}: no {what} within {WAIT:?}; output:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            };
            self.seen.push(line.clone());
            if pred(&line) {
                return line;
            }
        }
    }

    /// The next line ending with `suffix` (lines start with a local HH:MM timestamp).
    async fn expect_suffix(&mut self, suffix: &str) -> String {
        let line = self
            .expect(&format!("a line ending {suffix:?}"), |l| {
                l.ends_with(suffix)
            })
            .await;
        assert!(
            has_timestamp(&line),
            "{}: no timestamp in {line:?}",
            self.name
        );
        line
    }

    /// Close stdin and wait for the exit status and the rest of the output.
    async fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let status = timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit after stdin closed", self.name))
            .expect("wait");
        while let Ok(Some(line)) = timeout(WAIT, self.lines.recv()).await {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}

fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 6
        && b[0..2].iter().all(u8::is_ascii_digit)
        && b[2] == b':'
        && b[3..5].iter().all(u8::is_ascii_digit)
        && b[5] == b' '
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn scripted_clients_talk_line_by_line() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let mut ann = Script::start(&addr, "ann", &[]);
    ann.expect("the connected notice", |l| {
        l.contains(" -- connected to ") && l.ends_with(" as ann")
    })
    .await;
    let mut bob = Script::start(&addr, "bob", &[]);
    bob.expect("the connected notice", |l| l.ends_with(" as bob"))
        .await;
    ann.expect_suffix("-- bob joined #lobby").await;

    bob.type_line("hello ann").await;
    bob.expect_suffix("#lobby <bob> hello ann").await;
    ann.expect_suffix("#lobby <bob> hello ann").await;

    ann.type_line("/me waves").await;
    bob.expect_suffix("#lobby * ann waves").await;
    ann.type_line("/msg bob psst").await;
    ann.expect_suffix("-> *bob* psst").await;
    bob.expect_suffix("*ann* psst").await;
    // A line starting with // is said literally, with one slash.
    ann.type_line("//slash").await;
    bob.expect_suffix("#lobby <ann> /slash").await;

    let (status, ann_out) = ann.finish().await;
    assert!(status.success(), "ann exited with {status}");
    // No reason given: no "(quit)" after it.
    bob.expect_suffix("-- ann quit").await;
    let (status, bob_out) = bob.finish().await;
    assert!(status.success(), "bob exited with {status}");
    for line in ann_out.iter().chain(&bob_out) {
        assert!(
            !line.contains('\x1b') && !line.contains('\x07'),
            "escape in plain output: {line:?}"
        );
    }
}

/// Private rooms through the terminal client: `/mode`, `/invite`, `/op`, and the events it shows
/// (modes changed by another operator, being kicked).
#[tokio::test]
async fn scripted_client_runs_a_private_room() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let mut ann = Script::start(&server.addr.to_string(), "ann", &[]);
    ann.expect("the connected notice", |l| l.ends_with(" as ann"))
        .await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    ann.type_line("/join vault").await;
    ann.expect_suffix("joined #vault").await;
    ann.type_line("/mode +i +k s3cret").await;
    ann.expect_suffix("modes of #vault: invite-only, key").await;
    let e = bob.request(json!({"type":"join","room":"vault"})).await;
    assert_eq!(e["code"], "not_invited", "{e}");
    ann.type_line("/invite bob").await;
    ann.expect_suffix("invited bob to #vault").await;
    bob.skip_until("invite").await;
    let ok = bob.request(json!({"type":"join","room":"vault"})).await;
    assert_eq!(
        ok["members"][0],
        json!({"nick":"ann","status":"online","op":true})
    );
    ann.type_line("/op bob").await;
    ann.expect_suffix("bob is now an operator of #vault").await;
    bob.request(json!({"type":"mode","room":"vault","topic_lock":true}))
        .await;
    ann.expect_suffix("bob set the modes of #vault: invite-only, key, topic locked")
        .await;
    bob.request(json!({"type":"kick","room":"vault","nick":"ann","reason":"test"}))
        .await;
    ann.expect_suffix("ann was kicked from #vault by bob (test)")
        .await;
    let (status, out) = ann.finish().await;
    assert!(
        status.success(),
        "exit {status}; output:\n{}",
        out.join("\n")
    );
    assert!(
        out.iter().all(|l| !l.contains("s3cret")),
        "the key is not echoed: {out:?}"
    );
}

#[tokio::test]
async fn scripted_client_joins_its_room_shows_history_and_exits_after_replies() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    bob.request(json!({"type":"join","room":"dev"})).await;
    for i in 0..3 {
        let r = bob
            .request(json!({"type":"say","room":"dev","text":format!("old {i}")}))
            .await;
        assert_eq!(r["type"], "ok");
    }
    // Many lines at once: the client paces them under the rate limit and exits only when all
    // have been answered.
    let mut ann = Script::start(&server.addr.to_string(), "ann", &["--room", "dev"]);
    for i in 0..3 {
        ann.expect_suffix(&format!("#dev <bob> old {i}")).await;
    }
    for i in 0..15 {
        ann.type_line(&format!("line {i}")).await;
    }
    let (status, out) = ann.finish().await;
    assert!(
        status.success(),
        "exit {status}; output:\n{}",
        out.join("\n")
    );
    bob.expect_event("join").await;
    for i in 0..15 {
        let m = bob.skip_until("message").await;
        assert_eq!(
            (m["room"].as_str(), m["text"].as_str()),
            (Some("dev"), Some(format!("line {i}").as_str()))
        );
    }
    let own: Vec<&String> = out
        .iter()
        .filter(|l| l.contains("#dev <ann> line "))
        .collect();
    assert_eq!(own.len(), 15, "{out:?}");
}

#[tokio::test]
async fn taken_nick_gets_a_suffix_and_the_user_is_told() {
    let server = ServerProcess::start(&[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let mut second = Script::start(&server.addr.to_string(), "ann", &[]);
    second
        .expect_suffix("-- the nick ann is taken; you are ann_2")
        .await;
    second.type_line("which ann?").await;
    let m = ann.skip_until("message").await;
    assert_eq!(m["from"], "ann_2");
    let (status, _) = second.finish().await;
    assert!(status.success());
}

#[tokio::test]
async fn json_mode_prints_every_frame_as_json() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let mut jay = Script::start(
        &server.addr.to_string(),
        "jay",
        &["--json", "--room", "dev"],
    );
    jay.expect("the join reply", |l| l.contains(r#""cmd":"join""#))
        .await;
    bob.request(json!({"type":"join","room":"dev"})).await;
    jay.expect("bob's join", |l| l.contains(r#""type":"join""#))
        .await;
    bob.request(json!({"type":"say","room":"dev","text":"hi jay"}))
        .await;
    jay.expect("bob's message", |l| l.contains("hi jay")).await;
    jay.type_line("hi bob").await;
    jay.type_line("/nosuchcommand").await;
    jay.type_line("/who").await;
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("jay"), Some("hi bob"))
    );
    let (status, out) = jay.finish().await;
    // `/nosuchcommand` failed: with --json the exit status says so (1).
    assert_eq!(status.code(), Some(1));
    let frames: Vec<Value> = out
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    for f in &frames {
        assert!(f["type"].is_string(), "{f}");
    }
    assert_eq!(frames[0]["type"], "welcome");
    assert!(frames
        .iter()
        .any(|f| f["type"] == "message" && f["text"] == "hi jay"));
    assert!(frames
        .iter()
        .any(|f| f["type"] == "ok" && f["cmd"] == "say"));
    assert!(frames
        .iter()
        .any(|f| f["type"] == "ok" && f["cmd"] == "who"));
    assert_eq!(frames.last().unwrap()["type"], "bye");
}

#[tokio::test]
async fn reconnects_rejoins_and_catches_up_after_a_server_restart() {
    let data = TempDir::new("reconnect");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--listen",
        &listen,
        "--no-announce",
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    let mut server = ServerProcess::start_raw(&args);

    let mut ann = Script::start(&listen, "ann", &["--room", "dev"]);
    ann.expect_suffix("-- joined #dev").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    bob.request(json!({"type":"join","room":"dev"})).await;
    ann.expect_suffix("-- bob joined #dev").await;
    bob.request(json!({"type":"say","room":"dev","text":"before the crash"}))
        .await;
    ann.expect_suffix("#dev <bob> before the crash").await;
    ann.type_line("/away lunch").await;
    ann.expect_suffix("-- you are away: lunch").await;
    drop(bob);

    server.kill();
    ann.expect("the loss notice", |l| l.contains("connection lost"))
        .await;
    // Restart once the client has failed one attempt, so the next messages are sent while it
    // is still backing off and can only reach it through `history after`.
    ann.expect("a failed attempt", |l| {
        l.contains("reconnect attempt 1 failed")
    })
    .await;
    let server = ServerProcess::start_raw(&args);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    bob.request(json!({"type":"join","room":"dev"})).await;
    for text in ["missed in dev", "missed again"] {
        let r = bob
            .request(json!({"type":"say","room":"dev","text":text}))
            .await;
        assert_eq!(r["type"], "ok", "{r}");
    }
    // bob is in the lobby (the default room) too.
    let r = bob
        .request(json!({"type":"say","room":"lobby","text":"missed in lobby"}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");

    let caught = ann
        .expect("the catch-up notice", |l| l.contains("caught up"))
        .await;
    assert!(
        caught.contains("reconnected to") && caught.contains(" as ann"),
        "{caught}"
    );
    // Everything bob said is shown exactly once, in order.
    let shown = |text: &str| ann.seen.iter().filter(|l| l.ends_with(text)).count();
    let missing: Vec<&str> = [
        "#dev <bob> missed in dev",
        "#dev <bob> missed again",
        "#lobby <bob> missed in lobby",
    ]
    .into_iter()
    .filter(|t| shown(t) == 0)
    .collect();
    // Those not caught up before the notice arrive live after it.
    for text in &missing {
        ann.expect_suffix(text).await;
    }
    // Caught up plus arrived live after the notice: all three, none twice.
    let n: usize = caught
        .split("caught up ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {caught:?}"));
    assert_eq!(n + missing.len(), 3, "{caught:?}, late: {missing:?}");
    eprintln!("{caught}; {} arrived live", missing.len());
    for text in [
        "#dev <bob> before the crash",
        "#dev <bob> missed in dev",
        "#dev <bob> missed again",
    ] {
        assert_eq!(
            ann.seen.iter().filter(|l| l.ends_with(text)).count(),
            1,
            "{text:?} shown other than once:\n{}",
            ann.seen.join("\n")
        );
    }
    let pos = |text: &str| ann.seen.iter().position(|l| l.ends_with(text)).unwrap();
    assert!(pos("missed in dev") < pos("missed again"));

    // The client is back in #dev (rejoined) and what it says goes there.
    ann.type_line("back again").await;
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["room"].as_str(), m["from"].as_str(), m["text"].as_str()),
        (Some("dev"), Some("ann"), Some("back again"))
    );
    // Rejoined with the same nick and status.
    let who = bob.request(json!({"type":"who","room":"dev"})).await;
    let me = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["nick"] == "ann")
        .cloned();
    assert_eq!(
        me,
        Some(json!({"nick":"ann","status":"away","text":"lunch"})),
        "{who}"
    );
    let (status, _) = ann.finish().await;
    assert!(status.success());
}

// ----- discovery (loopback only: servers listen on 127.0.0.1, so they announce on 127/8) -----

/// Run `lanchat` with `args` and `stdin`, bounded by `WAIT`, with a data directory of its own.
async fn run_client(args: &[&str], stdin: &str) -> std::process::Output {
    let data = TempDir::new("run-data");
    run_client_in(data.path(), args, stdin).await
}

/// Run `lanchat` with `args` and `stdin`, bounded by `WAIT`, with `data` as its `XDG_DATA_HOME`.
pub async fn run_client_in(data: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(bin_path("lanchat"))
        .args(args)
        .env("XDG_DATA_HOME", data)
        .env("XDG_CONFIG_HOME", data.join("config"))
        .env_remove("LANCHAT_HOSTS")
        .env_remove("LANCHAT_INTERFACES")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lanchat");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).await.unwrap();
    drop(pipe);
    timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("lanchat {args:?} did not finish"))
        .expect("lanchat output")
}

pub fn announcing_server(presence_port: u16) -> ServerProcess {
    let port = presence_port.to_string();
    ServerProcess::start_raw(&[
        "--listen",
        "127.0.0.1:0",
        "--announce-port",
        &port,
        "--name",
        "e2e-office",
    ])
}

#[tokio::test]
async fn discover_lists_a_loopback_server() {
    let up = free_udp_port();
    let server = announcing_server(up);
    let port = up.to_string();
    let out = run_client(
        &["discover", "--port", &port, "--interface", "lo", "--json"],
        "",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["name"], "e2e-office");
    assert_eq!(lines[0]["address"], server.addr.to_string());
    assert_eq!(
        (lines[0]["auth"].as_bool(), lines[0]["state"].as_str()),
        (Some(false), Some("up"))
    );

    // Probed by unicast only (no interface to broadcast on), shown as a table.
    let out = run_client(
        &[
            "discover",
            "--port",
            &port,
            "--interface",
            "none",
            "--host",
            "127.0.0.1",
            "--timeout",
            "0.5",
        ],
        "",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().next().unwrap().starts_with("#  NAME"),
        "{table}"
    );
    assert!(
        table.contains("e2e-office") && table.contains(&server.addr.to_string()),
        "{table}"
    );
}

#[tokio::test]
async fn no_host_connects_to_the_one_server_found() {
    let up = free_udp_port();
    let server = announcing_server(up);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let port = up.to_string();
    let out = run_client(
        &[
            "--discover-port",
            &port,
            "--interface",
            "lo",
            "--nick",
            "zed",
        ],
        "found you\n",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("zed"), Some("found you"))
    );
}

#[tokio::test]
async fn nothing_found_says_what_was_tried() {
    let up = free_udp_port().to_string();
    let out = run_client(
        &[
            "discover",
            "--port",
            &up,
            "--interface",
            "lo",
            "--timeout",
            "0.3",
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "127.255.255.255 (lo)",
        &format!("UDP port {up}"),
        "firewall",
        "lanchat HOST[:PORT]",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    // Without a terminal there is nobody to ask: exit status 2.
    let out = run_client(
        &[
            "--discover-port",
            &up,
            "--interface",
            "lo",
            "--discover-timeout",
            "0.3",
            "--nick",
            "zed",
        ],
        "hello?\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("firewall") && err.contains("HOST[:PORT]"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_usage_is_one_line_and_exit_2() {
    for args in [
        &["--bogus"][..],
        &["127.0.0.1:1", "--nick", "a b"],
        &["host:notaport"],
    ] {
        let out = run_client(args, "").await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

#[tokio::test]
async fn an_unknown_interface_is_named_not_the_port() {
    let out = run_client(
        &["discover", "--interface", "nosuch0", "--timeout", "0.2"],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("lanchat: no IPv4 interface named nosuch0 ("),
        "{err}"
    );
    assert!(!err.contains("port"), "{err}");
}

// ----- the interactive client in a real terminal -----

/// The last non-empty row: where the prompt is.
fn prompt_row(screen: &[String]) -> &str {
    screen
        .iter()
        .rev()
        .find(|l| !l.is_empty())
        .map_or("", |l| l.as_str())
}

#[tokio::test]
async fn interactive_prompt_survives_incoming_messages() {
    let tmux = Tmux::new();
    let server = ServerProcess::start(&[]);
    let data = TempDir::new("tmux");
    let client = bin_path("lanchat");
    let command = format!(
        "env XDG_DATA_HOME='{}' XDG_CONFIG_HOME='{}' TERM=xterm '{}' {} --nick ann --no-bell",
        data.path().display(),
        data.path().display(),
        client.display(),
        server.addr
    );
    tmux.new_session(100, 30, &command);

    tmux.wait_for("the prompt", |s| prompt_row(s).starts_with("#lobby>"))
        .await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    tmux.wait_for("bob's join", |s| {
        s.iter().any(|l| l.ends_with("-- bob joined #lobby"))
    })
    .await;

    // Tab completes a command.
    tmux.send_literal("/jo");
    tmux.send_key("Tab");
    tmux.wait_for("the completed command", |s| {
        prompt_row(s) == "#lobby> /join"
    })
    .await;
    tmux.send_key("C-u");
    tmux.wait_for("an empty prompt", |s| prompt_row(s) == "#lobby>")
        .await;

    // Half a line typed, then a message arrives.
    tmux.send_literal("half a li");
    tmux.wait_for("the half line", |s| prompt_row(s) == "#lobby> half a li")
        .await;
    bob.request(json!({"type":"say","room":"lobby","text":"incoming while typing"}))
        .await;
    let screen = tmux
        .wait_for("the message above the intact prompt", |s| {
            let msg = s
                .iter()
                .position(|l| l.ends_with("<bob> incoming while typing"));
            let prompt = s.iter().rposition(|l| !l.is_empty());
            msg.is_some() && msg < prompt && prompt_row(s) == "#lobby> half a li"
        })
        .await;
    assert_eq!(
        screen.iter().filter(|l| l.contains("half a li")).count(),
        1,
        "the half line was drawn more than once:\n{}",
        screen.join("\n")
    );

    // Finishing the line sends it.
    tmux.send_literal("ne");
    tmux.send_key("Enter");
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("ann"), Some("half a line"))
    );
    tmux.wait_for("own message shown as sent", |s| {
        s.iter().any(|l| l.ends_with("<ann> half a line"))
    })
    .await;

    // /quit leaves; the input history is kept on disk.
    tmux.send_literal("/quit");
    tmux.send_key("Enter");
    let q = bob.skip_until("quit").await;
    assert_eq!(q["nick"], "ann");
    let deadline = Instant::now() + WAIT;
    while tmux.alive() {
        assert!(
            Instant::now() < deadline,
            "lanchat did not exit after /quit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history =
        std::fs::read_to_string(data.path().join("lanchat/history")).expect("history file");
    assert!(history.contains("half a line"), "{history}");
}

#[tokio::test]
async fn several_servers_found_the_user_picks_one() {
    let tmux = Tmux::new();
    let up = free_udp_port();
    let port = up.to_string();
    let first = announcing_server(up);
    let second = ServerProcess::start_raw(&[
        "--listen",
        "127.0.0.1:0",
        "--announce-port",
        &port,
        "--name",
        "e2e-annex",
    ]);
    let (mut watcher, _) = TestClient::hello(second.addr, "watcher").await;
    let data = TempDir::new("pick");
    let command = format!(
        "env XDG_DATA_HOME='{}' XDG_CONFIG_HOME='{}' TERM=xterm '{}' --discover-port {port} \
         --interface lo --nick ann --no-bell",
        data.path().display(),
        data.path().display(),
        bin_path("lanchat").display(),
    );
    tmux.new_session(120, 30, &command);
    let screen = tmux
        .wait_for("the choice", |s| {
            s.iter()
                .any(|l| l.contains("connect to which server? [1-2]"))
        })
        .await;
    // Pick the annex by the number the table gives it.
    let row = screen
        .iter()
        .find(|l| l.contains("e2e-annex"))
        .unwrap_or_else(|| panic!("annex not listed:\n{}", screen.join("\n")));
    assert!(
        screen.iter().any(|l| l.contains("e2e-office")),
        "{}",
        screen.join("\n")
    );
    assert!(row.contains(&second.addr.to_string()), "{row}");
    let number = row.split_whitespace().next().unwrap().to_owned();
    tmux.send_literal("9");
    tmux.send_key("Enter");
    tmux.wait_for("a hint for a wrong number", |s| {
        s.iter().any(|l| l.contains("type a number from 1 to 2"))
    })
    .await;
    tmux.send_literal(&number);
    tmux.send_key("Enter");
    tmux.wait_for("the prompt", |s| prompt_row(s).starts_with("#lobby>"))
        .await;
    let join = watcher.expect_event("join").await;
    assert_eq!(join["nick"], "ann", "joined the annex, not the office");
    drop(first);
}
