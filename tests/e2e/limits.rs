//! Rate limits, connection caps, passwords and the slow-consumer rule.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lanchat_tests::{ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};

#[tokio::test]
async fn rate_limited_messages_are_not_delivered() {
    let server = ServerProcess::start(&[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    ann.expect_event("join").await;
    for i in 0..30 {
        ann.send(json!({"type":"say","room":"lobby","text":format!("m{i}"),"id":i}))
            .await;
    }
    let mut accepted = Vec::new();
    let mut limited = 0;
    for i in 0..30 {
        let r = ann.reply_to(&json!(i)).await;
        match r["type"].as_str() {
            Some("ok") => accepted.push(format!("m{i}")),
            _ => {
                assert_eq!(r["code"], "rate_limited");
                limited += 1;
            }
        }
    }
    assert!(accepted.len() >= 10, "the burst of 10 is allowed");
    assert!(
        limited >= 10,
        "most of a 30-message burst is refused: {limited}"
    );
    bob.sync().await;
    let mut got = Vec::new();
    for _ in 0..accepted.len() {
        got.push(
            bob.expect_event("message").await["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(got, accepted, "exactly what was ok'ed, in order");
    bob.assert_quiet().await;
}

#[tokio::test]
async fn flooding_ends_with_bye_flood() {
    let server = ServerProcess::start(&["--rate-burst", "2", "--rate-per-sec", "1"]);
    let (mut c, _) = TestClient::hello(server.addr, "flooder").await;
    let mut line = Vec::new();
    for _ in 0..80 {
        line.extend_from_slice(b"{\"type\":\"dm\",\"to\":\"flooder\",\"text\":\"x\"}\n");
    }
    c.send_raw(&line).await;
    let frames = c.read_to_close().await;
    let limited = frames
        .iter()
        .filter(|f| f["code"] == "rate_limited")
        .count();
    assert_eq!(limited, 50);
    let last = frames.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["reason"].as_str()),
        (Some("bye"), Some("flood"))
    );
}

async fn expect_refused(addr: SocketAddr, local: Option<&str>) {
    let stream = connect_from(addr, local).await;
    let mut c = from_stream(stream);
    let frames = c.read_to_close().await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0]["code"], "server_full");
    assert_eq!(frames[1]["reason"], "server_full");
}

async fn connect_from(addr: SocketAddr, local: Option<&str>) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = local {
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    }
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .unwrap()
        .unwrap()
}

fn from_stream(stream: tokio::net::TcpStream) -> TestClient {
    TestClient::from_stream(stream)
}

/// Retry until a slot is free again (the server frees it once the old socket is closed).
async fn hello_when_free(addr: SocketAddr, nick: &str) -> TestClient {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = TestClient::connect(addr).await;
        c.send(json!({"type":"hello","nick":nick,"id":1})).await;
        let first = c.recv().await;
        if first["type"] == "welcome" {
            return c;
        }
        assert_eq!(first["code"], "server_full");
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn max_clients_and_recovery() {
    let server = ServerProcess::start(&["--max-clients", "3"]);
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(TestClient::hello(server.addr, &format!("u{i}")).await.0);
    }
    expect_refused(server.addr, None).await;
    let mut gone = held.pop().unwrap();
    gone.send(json!({"type":"quit"})).await;
    gone.read_to_close().await;
    drop(gone);
    let mut again = hello_when_free(server.addr, "newcomer").await;
    again.sync().await;
}

#[tokio::test]
async fn max_per_ip_applies_per_address() {
    let server = ServerProcess::start(&["--max-per-ip", "2"]);
    let _a = TestClient::hello(server.addr, "a").await;
    let _b = TestClient::hello(server.addr, "b").await;
    expect_refused(server.addr, Some("127.0.0.1")).await;
    // Another address is not affected.
    let stream = connect_from(server.addr, Some("127.0.0.2")).await;
    let mut c = from_stream(stream);
    let w = c.request(json!({"type":"hello","nick":"other"})).await;
    assert_eq!(w["type"], "welcome");
}

#[tokio::test]
async fn password_is_required() {
    let dir = std::env::temp_dir().join(format!("lanchat-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    for server in [
        ServerProcess::start(&["--password", "s3cret"]),
        ServerProcess::start(&["--password-file", file.to_str().unwrap()]),
    ] {
        for given in [None, Some("wrong"), Some("s3cre"), Some("s3cret ")] {
            let mut c = TestClient::connect(server.addr).await;
            let mut hello = json!({"type":"hello","nick":"x","id":1});
            if let Some(p) = given {
                hello["password"] = json!(p);
            }
            c.send(hello).await;
            let frames = c.read_to_close().await;
            assert_eq!(frames[0]["code"], "auth_failed", "{given:?}");
            assert_eq!(frames[0]["re"], 1);
            assert_eq!(frames[1]["reason"], "auth_failed");
        }
        let mut c = TestClient::connect(server.addr).await;
        let w = c
            .request(json!({"type":"hello","nick":"x","password":"s3cret"}))
            .await;
        assert_eq!(w["type"], "welcome");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_dropped_and_others_keep_receiving() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let (mut sender, _) = TestClient::hello(server.addr, "sender").await;
    let (mut fast, _) = TestClient::hello(server.addr, "fast").await;
    // The slow one registers, then never reads again.
    let (slow, _) = TestClient::hello(server.addr, "slow").await;
    sender.expect_event("join").await;
    sender.expect_event("join").await;
    fast.expect_event("join").await;

    sender_outlasts_a_slow_consumer(sender, fast, slow).await;
}

/// `sender` says 8,000 messages of 3 KB in `lobby`, where `fast` reads everything and `slow`
/// (its session, held open) reads nothing: `fast` gets every message in order and `slow`'s
/// `quit` "slow consumer", and `who` lists only the two that are left. Shared by the line and
/// WebSocket tests of the same behaviour.
pub(crate) async fn sender_outlasts_a_slow_consumer<S, T>(
    mut sender: TestClient,
    mut fast: TestClient<S>,
    slow: T,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    const N: usize = 8000;
    let text = "x".repeat(3000);
    let reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        let mut quit: Option<Value> = None;
        while texts.len() < N {
            let v = fast.recv().await;
            match v["type"].as_str() {
                Some("message") => texts.push(v["text"].as_str().unwrap()[..8].to_owned()),
                Some("quit") => quit = Some(v),
                other => panic!("unexpected {other:?}"),
            }
        }
        if quit.is_none() {
            quit = Some(fast.expect_event("quit").await);
        }
        (texts, quit.unwrap(), fast)
    });
    for i in 0..N {
        sender
            .send(json!({"type":"say","room":"lobby","text":format!("{i:08}{text}")}))
            .await;
        if i % 100 == 99 {
            sender.sync().await;
        }
    }
    let (texts, quit, _fast) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the fast reader kept up")
        .unwrap();
    let expected: Vec<String> = (0..N).map(|i| format!("{i:08}")).collect();
    assert_eq!(texts, expected);
    assert_eq!(
        quit,
        json!({"type":"quit","nick":"slow","reason":"slow consumer"})
    );
    drop(slow);
    // The session is really gone.
    let who = sender.request(json!({"type":"who","room":"lobby"})).await;
    let nicks: HashSet<_> = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["nick"].clone())
        .collect();
    assert_eq!(nicks, HashSet::from([json!("sender"), json!("fast")]));
}

/// Idle sockets that never say hello cannot take the slots: at most 16 wait per address, and a
/// connection stops counting as waiting once it has said hello.
#[tokio::test]
async fn connections_waiting_for_hello_are_capped_per_address() {
    let server = ServerProcess::start(&[]);
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(connect_from(server.addr, Some("127.0.0.3")).await);
    }
    expect_refused(server.addr, Some("127.0.0.3")).await;
    // Another address is not affected.
    let mut other = from_stream(connect_from(server.addr, Some("127.0.0.4")).await);
    let w = other.request(json!({"type":"hello","nick":"other"})).await;
    assert_eq!(w["type"], "welcome");
    // One of the idle ones registers: a new connection from that address is admitted again.
    let mut late = from_stream(idle.pop().unwrap());
    let w = late.request(json!({"type":"hello","nick":"late"})).await;
    assert_eq!(w["type"], "welcome");
    let mut next = from_stream(connect_from(server.addr, Some("127.0.0.3")).await);
    let w = next.request(json!({"type":"hello","nick":"next"})).await;
    assert_eq!(w["type"], "welcome");
}

/// On the Unix socket, --max-per-ip applies per peer user id.
#[tokio::test]
async fn unix_socket_peers_are_capped_per_user() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = std::env::temp_dir().join(format!("lanchat-unix-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chat.sock");
    let mut server = ServerProcess::start(&["--unix", path.to_str().unwrap(), "--max-per-ip", "2"]);
    server.next_listening();
    let mut held = Vec::new();
    for nick in ["u1", "u2"] {
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (r, mut w) = stream.into_split();
        let hello = format!("{{\"type\":\"hello\",\"nick\":\"{nick}\"}}\n");
        w.write_all(hello.as_bytes()).await.unwrap();
        let mut lines = tokio::io::BufReader::new(r).lines();
        let welcome = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap();
        assert!(welcome.unwrap().unwrap().contains("\"welcome\""));
        held.push((lines, w));
    }
    let third = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut lines = tokio::io::BufReader::new(third).lines();
    let mut frames = Vec::new();
    while let Some(line) = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        frames.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0]["code"], "server_full");
    assert_eq!(frames[1]["reason"], "server_full");
    // A TCP client is counted by its address, not by the user id.
    let (_tcp, _) = TestClient::hello(server.addr, "tcp").await;
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}
