//! Issue 15, "Nicks nobody can steal": a registered nick cannot be taken before or after its
//! owner disconnects or is dropped, and survives a restart with `--data-dir`; against the real
//! binary over real sockets.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use lanchat_tests::{ServerProcess, TempDir, TestClient};
use serde_json::{json, Value};

const SECRET: &str = "tWv2x9Qm4bLk7rZp";

/// Register `nick` with [`SECRET`]; the `ok` reply.
async fn owner(addr: SocketAddr, nick: &str) -> (TestClient, Value) {
    let (mut c, _) = TestClient::hello(addr, nick).await;
    let ok = c.request(json!({"type":"register","secret":SECRET})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(ok["cmd"], "register");
    assert_eq!(ok["nick"], nick);
    (c, ok)
}

/// What a fresh connection's `hello` as `nick` (with `secret`, if any) gets.
async fn try_hello(addr: SocketAddr, nick: &str, secret: Option<&str>) -> (TestClient, Value) {
    let mut c = TestClient::connect(addr).await;
    let mut hello = json!({"type":"hello","nick":nick});
    if let Some(secret) = secret {
        hello["secret"] = json!(secret);
    }
    let reply = c.request(hello).await;
    (c, reply)
}

async fn assert_refused(addr: SocketAddr, nick: &str, secret: Option<&str>) {
    let (mut c, reply) = try_hello(addr, nick, secret).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "nick_registered", "{reply}");
    // The connection stays open: another nick works.
    let welcome = c
        .request(json!({"type":"hello","nick":format!("not{nick}")}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

#[tokio::test]
async fn accounts_a_registered_nick_cannot_be_taken_before_or_after_its_owner_disconnects() {
    let server = ServerProcess::start(&[]);
    let (mut bob, ok) = owner(server.addr, "bob").await;
    assert_eq!(ok["persistent"], false, "no data directory: {ok}");
    // Owner online: no secret, a wrong one, another case.
    assert_refused(server.addr, "bob", None).await;
    assert_refused(server.addr, "BOB", Some("not the secret")).await;
    // A lookalike is nobody's.
    let (_c, reply) = try_hello(server.addr, "b0b", Some(SECRET)).await;
    assert_eq!(reply["code"], "nick_taken", "{reply}");

    bob.send(json!({"type":"quit"})).await;
    bob.read_to_close().await;
    // Owner gone: still reserved.
    assert_refused(server.addr, "bob", None).await;
    assert_refused(server.addr, "Bob", Some("still not the secret")).await;
    let (_c, welcome) = try_hello(server.addr, "bob", Some(SECRET)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

/// The owner stops answering pings and is dropped (`--ping-interval 1`: dropped after 2 s of
/// silence); a watcher answering its own pings sees the quit. The nick stays reserved.
#[tokio::test]
async fn accounts_a_registered_nick_stays_reserved_after_its_owner_is_dropped() {
    let server = ServerProcess::start(&["--ping-interval", "1"]);
    let (_silent, _) = owner(server.addr, "ann").await;
    let (mut watcher, _) = TestClient::hello(server.addr, "watcher").await;
    let quit = loop {
        let frame = watcher.recv().await;
        match frame["type"].as_str() {
            Some("ping") => watcher.send(json!({"type":"pong"})).await,
            Some("quit") => break frame,
            _ => {}
        }
    };
    assert_eq!(
        quit,
        json!({"type":"quit","nick":"ann","reason":"ping timeout"})
    );
    assert_refused(server.addr, "ann", None).await;
    let (_c, welcome) = try_hello(server.addr, "ann", Some(SECRET)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

#[tokio::test]
async fn accounts_the_secret_takes_over_a_live_session_which_is_told_replaced() {
    let server = ServerProcess::start(&[]);
    let (mut old, _) = owner(server.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    old.skip_until("join").await;
    let (_new, welcome) = try_hello(server.addr, "ann", Some(SECRET)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let frames = old.read_to_close().await;
    assert_eq!(frames.last().unwrap()["reason"], "replaced", "{frames:?}");
    assert_eq!(
        bob.skip_until("quit").await,
        json!({"type":"quit","nick":"ann","reason":"replaced"})
    );
}

#[tokio::test]
async fn accounts_survive_a_restart_with_a_data_dir_in_a_private_file() {
    let dir = TempDir::new("accounts");
    let data = dir.path().to_str().unwrap().to_owned();
    let mut server = ServerProcess::start(&["--data-dir", &data]);
    let (mut ann, ok) = owner(server.addr, "ann").await;
    assert_eq!(ok["persistent"], true, "{ok}");
    ann.send(json!({"type":"quit"})).await;
    ann.read_to_close().await;
    let file = dir.path().join("accounts.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("$argon2id$"), "{text}");
    assert!(!text.contains(SECRET), "only the hash is kept");
    server.stop();

    let server = ServerProcess::start(&["--data-dir", &data]);
    assert_refused(server.addr, "ann", None).await;
    let (mut back, welcome) = try_hello(server.addr, "ann", Some(SECRET)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let ok = back.request(json!({"type":"unregister"})).await;
    assert_eq!(
        ok,
        json!({"type":"ok","re":ok["re"],"cmd":"unregister","nick":"ann"})
    );
}

/// Run the terminal client in scripting mode as `nick`, with its config under `config`, typing
/// `stdin`; its output once it has exited (bounded).
async fn run_lanchat(
    addr: SocketAddr,
    nick: &str,
    config: &std::path::Path,
    stdin: &str,
) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(lanchat_tests::bin_path("lanchat"))
        .arg(addr.to_string())
        .args(["--nick", nick])
        .env_remove("LANCHAT_NICK")
        .env("NO_COLOR", "1")
        .env("XDG_CONFIG_HOME", config)
        // Its pins too stay in the test's directory, never in the real home.
        .env("XDG_DATA_HOME", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lanchat");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).await.unwrap();
    drop(pipe);
    let out = tokio::time::timeout(lanchat_tests::WAIT, child.wait_with_output())
        .await
        .expect("lanchat exits once its input is done")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// "Register once from the CLI, never think about it again": `/register` keeps a random secret
/// in the user's config (0600), and the next run says hello with it by itself.
#[tokio::test]
async fn accounts_the_terminal_client_registers_once_and_keeps_its_nick() {
    let server = ServerProcess::start(&[]);
    let config = TempDir::new("client-config");
    let out = run_lanchat(server.addr, "ann", config.path(), "/register\n").await;
    assert!(out.contains("ann is registered"), "{out}");
    let file = config.path().join("lanchat").join("secrets.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let secret = kept[server.addr.to_string()]["ann"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 32, "{kept}");

    // Someone else cannot have it; the owner's next run gets it with no word from the user.
    assert_refused(server.addr, "ann", None).await;
    let (mut watcher, _) = TestClient::hello(server.addr, "watcher").await;
    let out = run_lanchat(server.addr, "ann", config.path(), "it is me again\n").await;
    assert!(!out.contains("clear text"), "over TLS: no warning: {out}");
    let message = watcher.skip_until("message").await;
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("ann"), Some("it is me again"))
    );
}

/// A damaged accounts file stops the server before it listens, with one line and code 2: it
/// must not start with every registered nick open to anyone.
#[test]
fn accounts_a_damaged_accounts_file_stops_the_server_at_start() {
    let dir = TempDir::new("accounts-damaged");
    std::fs::write(
        dir.path().join("accounts.json"),
        "{\"version\":1,\"accounts\":",
    )
    .unwrap();
    let out = std::process::Command::new(lanchat_tests::bin_path("lanchat-server"))
        .args(["--listen", "127.0.0.1:0", "--no-announce", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("accounts.json: not an accounts file"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no listening line: {out:?}");
}
