//! Durable history (`--data-dir`): restarts, crashes, torn and corrupt lines, compaction, locking,
//! and the promises kept under a topic flood.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lanchat_tests::{bin_path, ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "lanchat-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &TempDir, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--data-dir", dir.path(), "--rate-per-sec", "0"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

async fn history(addr: std::net::SocketAddr, room: &str) -> Vec<Value> {
    let (mut c, _) = TestClient::hello(addr, &format!("reader{}", rand_suffix())).await;
    let h = c
        .request(json!({"type":"history","room":room,"limit":200}))
        .await;
    assert_eq!(h["cmd"], "history", "{h}");
    h["messages"].as_array().unwrap().clone()
}

/// The texts of a room's history, oldest first.
fn texts_of(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

async fn say_n(c: &mut TestClient, room: &str, n: usize, prefix: &str) -> Vec<Value> {
    let mut oks = Vec::new();
    for i in 0..n {
        let ok = c
            .request(json!({"type":"say","room":room,"text":format!("{prefix}{i}")}))
            .await;
        assert_eq!(ok["cmd"], "say");
        oks.push(ok);
    }
    oks
}

/// The ids of a room's current file, in file order.
fn ids_on_disk(dir: &TempDir, file: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(Path::new(dir.path()).join("rooms").join(file)).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone())
        .collect()
}

/// One client changing a room's topic to `t0`, `t1`, ... `n` times, pipelined on one connection
/// (as fast as the server reads), its replies read as they come so that it is never dropped as a
/// slow consumer.
struct TopicFlood {
    /// How many changes have been acknowledged: the last is `t{acked - 1}`.
    acked: watch::Receiver<usize>,
    reader: tokio::task::JoinHandle<()>,
}

impl TopicFlood {
    async fn start(addr: std::net::SocketAddr, room: &str, n: usize) -> TopicFlood {
        let (mut c, _) = TestClient::hello(addr, "flooder").await;
        let joined = c.request(json!({"type":"join","room":room})).await;
        assert_eq!(joined["cmd"], "join", "{joined}");
        let (read, mut write) = c.into_stream().into_split();
        let mut lines = Vec::new();
        for i in 0..n {
            let frame = json!({"type":"topic","id":i,"room":room,"topic":format!("t{i}")});
            serde_json::to_writer(&mut lines, &frame).unwrap();
            lines.push(b'\n');
        }
        tokio::spawn(async move {
            // The server closes the connection at shutdown: a failed write is expected then.
            let _ = write.write_all(&lines).await;
            // Keep the write half open: EOF would end the session before the flood is read.
            std::future::pending::<()>().await;
        });
        let (acks, acked) = watch::channel(0);
        let reader = tokio::spawn(async move {
            let mut frames = BufReader::new(read).lines();
            while let Ok(Some(line)) = frames.next_line().await {
                let frame: Value = serde_json::from_str(&line).unwrap();
                // Others' events (the lobby everyone joins) are not the flood's concern.
                match frame["type"].as_str() {
                    Some("ok") => {
                        assert_eq!(frame["cmd"], "topic", "{frame}");
                        acks.send_modify(|n| *n += 1);
                    }
                    Some("error") => panic!("flooder: {frame}"),
                    _ => {}
                }
            }
        });
        TopicFlood { acked, reader }
    }

    /// Wait until `count` changes have been acknowledged.
    async fn until_acked(&mut self, count: usize) {
        tokio::time::timeout(WAIT, self.acked.wait_for(|n| *n >= count))
            .await
            .unwrap_or_else(|_| panic!("fewer than {count} topic changes acknowledged"))
            .expect("flood reader ended");
    }

    /// Once the server closed the connection: how many changes were acknowledged.
    async fn finish(self) -> usize {
        tokio::time::timeout(WAIT, self.reader)
            .await
            .expect("the server closed the flooder's connection")
            .expect("flood reader");
        *self.acked.borrow()
    }
}

/// The topic of `room_key` in the data directory's `topics.json`.
fn topic_on_disk(dir: &TempDir, room_key: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(dir.path()).join("topics.json")).ok()?;
    let topics: Value = serde_json::from_str(&text).unwrap();
    topics[room_key]["topic"].as_str().map(str::to_owned)
}

/// Wait until the writer's fsync interval has surely passed: the file holds every line.
fn wait_on_disk(dir: &TempDir, file: &str, lines: usize) {
    let path = Path::new(dir.path()).join("rooms").join(file);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = std::fs::read_to_string(&path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= lines {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{file} has {n} of {lines} lines"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn kill_9_and_restart_keeps_every_acknowledged_message() {
    let dir = TempDir::new("durable");
    let mut server = start(&dir, &[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let oks = say_n(&mut ann, "lobby", 30, "m").await;
    // `/` is not allowed in room names at all (PROTOCOL.md); `..` and non-ASCII letters are.
    let e = ann.request(json!({"type":"join","room":"Ünï/..x"})).await;
    assert_eq!(e["code"], "room_invalid");
    ann.request(json!({"type":"join","room":"Ünï.."})).await;
    let weird = say_n(&mut ann, "Ünï..", 3, "w").await;
    ann.request(json!({"type":"topic","room":"Ünï..","topic":"dots and umlauts"}))
        .await;
    // Once the writer has handed the lines to the kernel, kill -9 cannot lose them (the fsync
    // each second is what protects against a power cut, which a test cannot simulate).
    wait_on_disk(&dir, "lobby.jsonl", 30);
    wait_on_disk(&dir, "%C3%BCn%C3%AF%2E%2E.jsonl", 3);
    let topics = Path::new(dir.path()).join("topics.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&topics).is_ok_and(|t| t.contains("dots and umlauts")) {
        assert!(std::time::Instant::now() < deadline, "topic never written");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();

    let server = start(&dir, &[]);
    let msgs = history(server.addr, "lobby").await;
    assert_eq!(msgs.len(), 30);
    for (m, ok) in msgs.iter().zip(&oks) {
        assert_eq!((&m["id"], &m["ts"]), (&ok["id"], &ok["ts"]));
        assert_eq!(m["from"], "ann");
    }
    let msgs = history(server.addr, "ünï..").await;
    assert_eq!(
        msgs.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(),
        weird.iter().map(|m| m["id"].clone()).collect::<Vec<_>>()
    );
    assert_eq!(msgs[0]["room"], "Ünï..");
    let (mut c, _) = TestClient::hello(server.addr, "topic-reader").await;
    let t = c.request(json!({"type":"topic","room":"ÜNÏ.."})).await;
    assert_eq!(t["topic"], "dots and umlauts");
    assert_eq!(t["room"], "Ünï..");
}

#[tokio::test]
async fn sigterm_flushes_before_exit() {
    let dir = TempDir::new("flush");
    let mut server = start(&dir, &[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let oks = say_n(&mut ann, "lobby", 50, "m").await;
    server.stop();
    let text = std::fs::read_to_string(Path::new(dir.path()).join("rooms/lobby.jsonl")).unwrap();
    let ids: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids, oks.iter().map(|o| o["id"].clone()).collect::<Vec<_>>());
}

#[tokio::test]
async fn torn_and_corrupt_lines_are_skipped() {
    let dir = TempDir::new("torn");
    let rooms = Path::new(dir.path()).join("rooms");
    {
        let mut server = start(&dir, &[]);
        let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
        say_n(&mut ann, "lobby", 4, "m").await;
        server.stop();
    }
    // Garbage in the middle, a torn last line (a crash mid-write).
    let file = rooms.join("lobby.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = &lines[3][..lines[3].len() / 2];
    let broken = format!(
        "{}\n{}\n\u{0}garbage{{\n{}\n{}",
        lines[0], lines[1], lines[2], torn
    );
    std::fs::write(&file, broken).unwrap();

    let mut server = start(&dir, &[]);
    let msgs = history(server.addr, "lobby").await;
    let texts = texts_of(&msgs);
    assert_eq!(texts, ["m0", "m1", "m2"]);
    assert!(
        server.stderr_text().contains("skipped"),
        "one warning: {}",
        server.stderr_text()
    );
    // What is written after the torn line survives the next restart too.
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    say_n(&mut ann, "lobby", 2, "after").await;
    server.stop();
    let server = start(&dir, &[]);
    let texts = texts_of(&history(server.addr, "lobby").await);
    assert_eq!(texts, ["m0", "m1", "m2", "after0", "after1"]);
}

#[tokio::test]
async fn rotation_keeps_the_newest_and_bounds_the_files() {
    let dir = TempDir::new("rotate");
    let mut server = start(&dir, &["--history", "10"]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    say_n(&mut ann, "lobby", 45, "m").await;
    server.stop();
    let rooms = Path::new(dir.path()).join("rooms");
    let count = |name: &str| {
        std::fs::read_to_string(rooms.join(name))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Rotated when it holds 10 lines: after 45, the previous file holds 31-40, the current 41-45.
    assert_eq!(
        (count("lobby.jsonl.1"), count("lobby.jsonl")),
        (10, 5),
        "lines in the previous and current files for --history 10"
    );
    let server = start(&dir, &["--history", "10"]);
    let texts = texts_of(&history(server.addr, "lobby").await);
    let expected: Vec<_> = (35..45).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
}

#[tokio::test]
async fn a_crash_during_rotation_loses_nothing() {
    for point in ["rotate-before-rename", "rotate-after-rename"] {
        let dir = TempDir::new("crash");
        let mut server = ServerProcess::start_with(
            Command::new(bin_path("lanchat-server"))
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--no-announce",
                    "--data-dir",
                    dir.path(),
                ])
                .args(["--history", "5", "--rate-per-sec", "0"])
                .env("LANCHAT_TEST_CRASH_AT", point),
        );
        let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
        // The 5th line fills the file and triggers the rotation and the crash, which may come
        // before its ok reaches us.
        let oks = say_n(&mut ann, "lobby", 4, "m").await;
        ann.send(json!({"type":"say","room":"lobby","text":"m4"}))
            .await;
        let status = server
            .wait_exit(Duration::from_secs(10))
            .expect("crashed at the injected point");
        assert!(!status.success(), "{point}");
        let server = start(&dir, &["--history", "5"]);
        let msgs = history(server.addr, "lobby").await;
        let texts = texts_of(&msgs);
        let expected: Vec<_> = (0..5).map(|i| format!("m{i}")).collect();
        assert_eq!(texts, expected, "{point}: the newest 5, whole");
        let ids: Vec<_> = msgs[..4].iter().map(|m| m["id"].clone()).collect();
        let acked: Vec<_> = oks.iter().map(|o| o["id"].clone()).collect();
        assert_eq!(ids, acked, "{point}: same ids as acknowledged");
        // And the room goes on: a new line after the restart survives the next one.
        let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
        say_n(&mut bob, "lobby", 1, "after").await;
        let mut server = server;
        server.stop();
        let server = start(&dir, &["--history", "5"]);
        let texts = texts_of(&history(server.addr, "lobby").await);
        assert_eq!(texts, ["m1", "m2", "m3", "m4", "after0"], "{point}");
    }
}

#[test]
fn a_second_server_on_the_same_dir_is_refused() {
    let dir = TempDir::new("lock");
    let _first = start(&dir, &[]);
    let out = Command::new(bin_path("lanchat-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-announce",
            "--data-dir",
            dir.path(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another lanchat-server"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// The finding: every topic change rewrote `topics.json` (two fsyncs) in the writer's one
/// FIFO, so messages queued behind a topic flood stayed in memory for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_flood_does_not_delay_acknowledged_messages() {
    let dir = TempDir::new("topic-flood-kill");
    let mut server = start(&dir, &[]);
    let mut flood = TopicFlood::start(server.addr, "flood", 20_000).await;
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    flood.until_acked(100).await;
    let oks = say_n(&mut ann, "lobby", 10, "m").await;
    // README: a message acknowledged more than about a second before `kill -9` is on disk. The
    // promise is a time, so the test waits that time.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    server.kill();
    let acked: Vec<Value> = oks.iter().map(|o| o["id"].clone()).collect();
    assert_eq!(
        ids_on_disk(&dir, "lobby.jsonl"),
        acked,
        "every message acknowledged 1.3 s before kill -9, in order (flood: {} topics acked)",
        *flood.acked.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_topic_flood_exits_in_time_with_everything_on_disk() {
    let dir = TempDir::new("topic-flood-term");
    let mut server = start(&dir, &[]);
    let flood_size = 20_000;
    let mut flood = TopicFlood::start(server.addr, "flood", flood_size).await;
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    flood.until_acked(100).await;
    let oks = say_n(&mut ann, "lobby", 10, "m").await;
    server.sigterm();
    let asked = Instant::now();
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(5)))
        .unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM:\n{}", server.stderr_text()));
    assert!(status.success(), "{status:?}:\n{}", server.stderr_text());
    let took = asked.elapsed();
    let acked_topics = flood.finish().await;
    let acked: Vec<Value> = oks.iter().map(|o| o["id"].clone()).collect();
    assert_eq!(
        ids_on_disk(&dir, "lobby.jsonl"),
        acked,
        "exit after {took:?}"
    );
    // The server may have applied changes whose ok it could not deliver before it closed the
    // connection: the topic on disk is the last acknowledged one or a later one.
    let topic = topic_on_disk(&dir, "flood").expect("the flood's topic is on disk");
    let index: usize = topic.strip_prefix('t').unwrap().parse().unwrap();
    assert!(
        (acked_topics - 1..flood_size).contains(&index),
        "on disk {topic}, last acknowledged t{}",
        acked_topics - 1
    );
}

/// With `--data-dir`, a room left by everyone is forgotten from memory after `--room-idle`, and
/// comes back from disk, history and topic, when it is named again.
#[tokio::test]
async fn an_idle_room_is_forgotten_and_comes_back_from_disk() {
    let dir = TempDir::new("idle");
    let server = start(&dir, &["--room-idle", "1"]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let ok = ann.request(json!({"type":"join","room":"Attic"})).await;
    assert_eq!(ok["room"], "Attic");
    say_n(&mut ann, "attic", 3, "dusty ").await;
    ann.request(json!({"type":"topic","room":"attic","topic":"old boxes"}))
        .await;
    // Held, a `who` names the room as first spelled; forgotten, as asked (`who` never loads).
    let (mut cy, _) = TestClient::hello(server.addr, "cy").await;
    let who = cy.request(json!({"type":"who","room":"ATTIC"})).await;
    assert_eq!(who["room"], "Attic", "held while it has a member");
    ann.request(json!({"type":"leave","room":"attic"})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let who = cy.request(json!({"type":"who","room":"ATTIC"})).await;
        if who["room"] == "ATTIC" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle room was never forgotten"
        );
        // Polling with a deadline: the forgetting is a timer of the server's, not an event.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server
            .stderr_text()
            .contains("idle rooms forgotten from memory"),
        "{}",
        server.stderr_text()
    );

    // A history request brings it back, every message and the spelling.
    let h = cy
        .request(json!({"type":"history","room":"attic","limit":10}))
        .await;
    assert_eq!(h["room"], "Attic", "{h}");
    assert_eq!(
        texts_of(h["messages"].as_array().unwrap()),
        ["dusty 0", "dusty 1", "dusty 2"]
    );
    // And a join finds the topic (the room loaded again if it was forgotten again meanwhile).
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let ok = bob.request(json!({"type":"join","room":"attic"})).await;
    assert_eq!(
        (&ok["room"], &ok["topic"]),
        (&json!("Attic"), &json!("old boxes"))
    );
    let h = bob.request(json!({"type":"history","room":"attic"})).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 3);
    // A new message joins the old ones, on disk and in memory.
    bob.request(json!({"type":"say","room":"attic","text":"new"}))
        .await;
    let h = bob.request(json!({"type":"history","room":"attic"})).await;
    assert_eq!(
        texts_of(h["messages"].as_array().unwrap()).last().unwrap(),
        "new"
    );
}
