//! Timers and the server's own life: hello timeout, keepalive, shutdown, bad flags.

use std::process::{Command, Output};
use std::time::Duration;

use lanchat_tests::{bin_path, ServerProcess, TempDir, TestClient};
use serde_json::json;

#[tokio::test]
async fn hello_timeout() {
    let server = ServerProcess::start(&["--hello-timeout", "1"]);
    let mut c = TestClient::connect(server.addr).await;
    let frames = c.read_to_close().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "bye");
    assert_eq!(frames[0]["reason"], "hello_timeout");
}

/// The flag reaches the binary's sessions: welcome announces it and a silent client is pinged.
/// What follows a ping (pong, silence, ping_timeout) is tested in-process on a paused clock
/// (server/tests/inprocess/timers.rs).
#[tokio::test]
async fn ping_interval_flag_sets_the_keepalive() {
    let server = ServerProcess::start(&["--ping-interval", "1"]);
    let (mut c, w) = TestClient::hello(server.addr, "quiet").await;
    assert_eq!(w["limits"]["ping_interval_s"], 1);
    assert_eq!(c.recv().await, json!({"type":"ping"}));
    c.send(json!({"type":"pong"})).await;
    c.sync().await;
}

#[tokio::test]
async fn sigterm_says_bye_to_everyone_and_exits_zero() {
    let mut server = ServerProcess::start(&[]);
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(TestClient::hello(server.addr, &format!("c{i}")).await.0);
    }
    // One is not registered yet: it is told too.
    clients.push(TestClient::connect(server.addr).await);
    for c in &mut clients[..5] {
        c.sync().await;
    }
    server.sigterm();
    for c in &mut clients {
        let frames = c.read_to_close().await;
        let bye = frames.last().expect("a bye");
        assert_eq!(bye["reason"], "shutting_down", "{frames:?}");
        assert!(
            frames.iter().all(|f| f["type"] != "quit"),
            "no quit storm at shutdown: {frames:?}"
        );
    }
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigint_also_stops_cleanly() {
    let mut server = ServerProcess::start(&[]);
    let (mut c, _) = TestClient::hello(server.addr, "x").await;
    server.signal(libc::SIGINT);
    assert_eq!(
        c.read_to_close().await.last().unwrap()["reason"],
        "shutting_down"
    );
    assert!(server.wait_exit(Duration::from_secs(5)).unwrap().success());
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let long_name = "n".repeat(201);
    for args in [
        vec!["--max-clients", "lots"],
        vec!["--listen", "not-an-address"],
        vec!["--default-room", "no spaces"],
        vec!["--max-text", "20000"],
        vec!["--password-file", "/nonexistent/pw"],
        vec!["--log-format", "xml"],
        vec!["--ping-interval", "0"],
        vec!["--name", &long_name],
        vec!["--name", "bell\u{7}"],
    ] {
        let out = Command::new(bin_path("lanchat-server"))
            .args(&args)
            .args(["--no-announce"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Run the server with `args` (on loopback, not announcing) and return how it exited, killing it
/// if it is still running after `WAIT`.
fn run_to_exit(args: &[&str]) -> Output {
    let state = TempDir::new("state");
    lanchat_tests::run_server_to_exit(args, state.path())
}

#[test]
fn max_text_that_cannot_fit_in_max_line_is_refused_at_start() {
    // 2 x 257 + 512 = 1026 > 1024; 2 x 7937 + 512 > 16384 (the default line).
    for args in [
        &["--max-line", "1024", "--max-text", "257"][..],
        &["--max-text", "7937"],
    ] {
        let out = run_to_exit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("lanchat-server: --max-text "),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Below the floor of --max-line, clap refuses (its message takes several lines).
    assert_eq!(run_to_exit(&["--max-line", "1023"]).status.code(), Some(2));
}

#[tokio::test]
async fn max_text_follows_a_small_max_line() {
    let server = ServerProcess::start(&["--max-line", "1024"]);
    let (mut c, w) = TestClient::hello(server.addr, "ann").await;
    assert_eq!(w["limits"]["max_line"], 1024);
    assert_eq!(w["limits"]["max_text"], 256);
    // The longest text, every byte escaped to two, fits in one line with a long id.
    let ok = c
        .request(json!({"type":"say","id":"x".repeat(64),"room":"lobby","text":"\n".repeat(256)}))
        .await;
    assert_eq!(ok["cmd"], "say", "{ok}");
}

#[test]
fn env_vars_set_flags() {
    let server = ServerProcess::start_with(
        Command::new(bin_path("lanchat-server"))
            .args(["--listen", "127.0.0.1:0", "--no-announce"])
            .env("LANCHAT_NAME", "from env")
            .env("LANCHAT_DEFAULT_ROOM", "hall"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_c, w) = TestClient::hello(server.addr, "x").await;
        assert_eq!(w["name"], "from env");
        assert_eq!(w["rooms"], json!(["hall"]));
    });
}
