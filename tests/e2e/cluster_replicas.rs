//! Cluster mode over a NATS cluster (issue 19): with `--cluster-replicas 3` on three NATS servers,
//! the stream and the nick bucket survive the loss of any one server; with one NATS server, more
//! replicas than servers is a clear start-up error. And a NATS that wants a password.

use std::time::{Duration, Instant};

use lanchat_tests::nats::Nats;
use lanchat_tests::{ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};

/// How long a `say` may keep getting `unavailable` after a NATS server is lost: the stream's
/// leader may have to be elected again, and the node may have to reconnect to another server.
const RECOVERY: Duration = Duration::from_secs(30);

fn node(urls: &str, replicas: &str) -> ServerProcess {
    ServerProcess::start(&[
        "--no-tls",
        "--rate-per-sec",
        "0",
        "--cluster",
        urls,
        "--cluster-name",
        "rep",
        "--cluster-replicas",
        replicas,
    ])
}

/// Say `text` until it is stored (`ok`); each refusal must be `unavailable`.
async fn say_until_stored(c: &mut TestClient, room: &str, text: &str) -> String {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let r = c
            .request(json!({"type":"say","room":room,"text":text}))
            .await;
        if r["type"] == "ok" {
            return r["id"].as_str().expect("an id").to_owned();
        }
        assert_eq!(r["code"], "unavailable", "{r}");
        assert!(Instant::now() < deadline, "{text:?} never stored: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next message with `text` (other frames skipped), within [`RECOVERY`].
async fn message(c: &mut TestClient, text: &str) -> Value {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(v) = c.recv_within(left).await else {
            panic!("{}: no {text:?} within {RECOVERY:?}", c.nick)
        };
        if v["type"] == "message" && v["text"] == text {
            return v;
        }
    }
}

fn ids(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_survive_each_nats_server_lost_in_turn() {
    let mut nats = Nats::cluster(3);
    let urls = Nats::urls(&nats);
    let (a, b) = (node(&urls, "3"), node(&urls, "3"));
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(b.addr, "bob").await;
    for c in [&mut ann, &mut bob] {
        let ok = c.request(json!({"type":"join","room":"r"})).await;
        assert_eq!(ok["cmd"], "join", "{ok}");
    }
    let mut acked = vec![say_until_stored(&mut ann, "r", "all up").await];
    message(&mut bob, "all up").await;
    // Each server in turn: killed (with whatever leader or copy it held), a message stored and
    // delivered without it, then started again and caught up before the next one goes.
    for (down, server) in nats.iter_mut().enumerate() {
        server.kill();
        let text = format!("n{down} down");
        acked.push(say_until_stored(&mut ann, "r", &text).await);
        let got = message(&mut bob, &text).await;
        assert_eq!(got["id"].as_str(), acked.last().map(String::as_str));
        server.restart();
        server.wait_healthy();
    }
    // Every acknowledged message, in order, on a node started after all this.
    let late = node(&urls, "3");
    let (mut cat, _) = TestClient::hello(late.addr, "cat").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let h = cat
            .request(json!({"type":"history","room":"r","limit":100}))
            .await;
        if ids(&h) == acked {
            break;
        }
        assert!(Instant::now() < deadline, "late node's history: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The nick bucket kept ann's claim through it all.
    let mut again = TestClient::connect(late.addr).await;
    let r = again.request(json!({"type":"hello","nick":"ann"})).await;
    assert_eq!(r["code"], "nick_taken", "{r}");
    // A node asking for one copy leaves the stream at three, and says so.
    let other = node(&urls, "1");
    let said = other.stderr_text();
    assert!(said.contains("another number of copies"), "{said}");
}

#[test]
fn more_replicas_than_nats_servers_stops_the_start_with_a_clear_error() {
    let nats = Nats::start();
    let state = lanchat_tests::TempDir::new("replicas-exit");
    let out = lanchat_tests::run_server_to_exit(
        &[
            "--no-tls",
            "--cluster",
            &nats.url,
            "--cluster-replicas",
            "3",
        ],
        state.path(),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open the JetStream stream"),
        "{stderr}"
    );
    let out = lanchat_tests::run_server_to_exit(
        &["--cluster", &nats.url, "--cluster-replicas", "9"],
        state.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_password_in_the_url_works_and_is_never_shown() {
    let nats = Nats::start_with(&["--user", "lanchat", "--pass", "s3cret-pass"]);
    let url = nats.url.replace("nats://", "nats://lanchat:s3cret-pass@");
    let node = ServerProcess::start(&["--no-tls", "--cluster", &url, "--cluster-name", "auth"]);
    let (_ann, welcome) = TestClient::hello(node.addr, "ann").await;
    assert_eq!(welcome["cluster"], "auth", "{welcome}");
    let said = node.stderr_text();
    assert!(said.contains("nats://***@127.0.0.1:"), "{said}");
    assert!(!said.contains("s3cret-pass"), "{said}");
    // A wrong password: exit 3, and the one line does not show it either.
    let state = lanchat_tests::TempDir::new("nats-auth");
    let wrong = nats.url.replace("nats://", "nats://lanchat:wrong-pass@");
    let out = lanchat_tests::run_server_to_exit(&["--no-tls", "--cluster", &wrong], state.path());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach NATS"), "{stderr}");
    assert!(!stderr.contains("wrong-pass"), "{stderr}");
}
