//! Cluster mode (issue 19): registered nicks are the cluster's, not a node's. A registration on
//! one node binds every node (its accounts bucket, watched by each), its secret takes over a
//! session held on another node, and unregistering anywhere frees it everywhere.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lanchat_tests::nats::Nats;
use lanchat_tests::{ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};

const SECRET: &str = "tWv2x9Qm4bLk7rZp";
/// Budgets off: the tests register in bursts.
const FLAGS: &[&str] = &["--rate-per-sec", "0"];

fn node(nats: &Nats, extra: &[&str]) -> ServerProcess {
    let mut flags = FLAGS.to_vec();
    flags.extend_from_slice(extra);
    nats.node("test", &flags)
}

/// `nick` on `addr`, registered with [`SECRET`].
async fn owner(addr: SocketAddr, nick: &str) -> TestClient {
    let (mut c, _) = TestClient::hello(addr, nick).await;
    let ok = c.request(json!({"type":"register","secret":SECRET})).await;
    assert_eq!(ok["cmd"], "register", "{ok}");
    assert_eq!(ok["nick"], nick, "{ok}");
    assert_eq!(ok["persistent"], true, "JetStream keeps it on disk: {ok}");
    c
}

async fn leave(mut c: TestClient) {
    c.send(json!({"type":"quit"})).await;
    c.read_to_close().await;
}

/// A fresh connection's `hello` as `nick` (with `secret`): the connection and the reply. While
/// the nick's claim is still held cluster-wide by a session that just left (its node gives it
/// back a moment later), the `hello` is tried again.
async fn hello(addr: SocketAddr, nick: &str, secret: Option<&str>) -> (TestClient, Value) {
    let mut frame = json!({"type":"hello","nick":nick});
    if let Some(secret) = secret {
        frame["secret"] = json!(secret);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = TestClient::connect(addr).await;
        let reply = c.request(frame.clone()).await;
        if reply["code"] != "nick_taken" || Instant::now() > deadline {
            return (c, reply);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_code(addr: SocketAddr, nick: &str, secret: Option<&str>, code: &str) {
    let mut frame = json!({"type":"hello","nick":nick});
    if let Some(secret) = secret {
        frame["secret"] = json!(secret);
    }
    let mut c = TestClient::connect(addr).await;
    let reply = c.request(frame).await;
    assert_eq!(reply["type"], "error", "{nick}: {reply}");
    assert_eq!(reply["code"], code, "{nick}: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accounts_a_nick_registered_on_one_node_needs_its_secret_on_every_node() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, &[]), node(&nats, &[]));
    let bob = owner(a.addr, "bob").await;
    // Owner online on A: on B without the secret, or with a wrong one, as on one server.
    assert_code(b.addr, "bob", None, "nick_registered").await;
    assert_code(b.addr, "BOB", Some("not the secret"), "nick_registered").await;
    // A lookalike is nobody's, on either node.
    assert_code(b.addr, "b0b", Some(SECRET), "nick_taken").await;
    assert_code(a.addr, "b0b", None, "nick_taken").await;

    leave(bob).await;
    // Owner gone: still reserved on B.
    let (_c, refused) = hello(b.addr, "bob", None).await;
    assert_eq!(refused["code"], "nick_registered", "{refused}");
    let (_bob, welcome) = hello(b.addr, "Bob", Some(SECRET)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["nick"], "Bob", "{welcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accounts_lookalikes_registered_at_once_on_two_nodes_are_won_exactly_once() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, &[]), node(&nats, &[]));
    for round in ["x", "y", "z", "q", "w", "k", "v", "j", "h", "g"] {
        // Two nicks that look alike, each held on its own node (the nick bucket tells them
        // apart), registered at the same moment.
        let (plain, digit) = (format!("bob{round}"), format!("b0b{round}"));
        let (mut on_a, _) = TestClient::hello(a.addr, &plain).await;
        let (mut on_b, _) = TestClient::hello(b.addr, &digit).await;
        let register = json!({"type":"register","secret":SECRET});
        let (ra, rb) = tokio::join!(on_a.request(register.clone()), on_b.request(register));
        let won = crate::cluster::one_won(&ra, &rb, |r| r["cmd"] == "register", round);
        let winner = won["nick"].as_str().unwrap().to_owned();
        // Both nodes hold the one winner: its nick needs the secret on each.
        leave(on_a).await;
        leave(on_b).await;
        for addr in [a.addr, b.addr] {
            let (_c, refused) = hello(addr, &winner, None).await;
            assert_eq!(refused["code"], "nick_registered", "{winner}: {refused}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accounts_unregistering_on_one_node_frees_the_nick_on_the_other() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, &[]), node(&nats, &[]));
    leave(owner(a.addr, "ann").await).await;
    let (mut ann, welcome) = hello(b.addr, "ann", Some(SECRET)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let ok = ann.request(json!({"type":"unregister"})).await;
    assert_eq!(
        (&ok["cmd"], &ok["nick"]),
        (&json!("unregister"), &json!("ann")),
        "{ok}"
    );
    let again = ann.request(json!({"type":"unregister"})).await;
    assert_eq!(again["code"], "no_such_nick", "{again}");
    leave(ann).await;
    let (_c, welcome) = hello(a.addr, "ann", None).await;
    assert_eq!(welcome["type"], "welcome", "free on A: {welcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accounts_a_node_started_after_a_registration_knows_it() {
    let nats = Nats::start();
    let a = node(&nats, &[]);
    leave(owner(a.addr, "Ian").await).await;
    drop(a);
    // Not a node that was there to watch it: this one reads the bucket as it starts.
    let b = node(&nats, &[]);
    let (_c, refused) = hello(b.addr, "ian", None).await;
    assert_eq!(refused["code"], "nick_registered", "{refused}");
    // `Ian` looks like `lan`.
    assert_code(b.addr, "lan", None, "nick_taken").await;
    let (_ian, welcome) = hello(b.addr, "Ian", Some(SECRET)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accounts_max_accounts_counts_every_nodes_registrations() {
    let nats = Nats::start();
    let flags = ["--max-accounts", "1"];
    let (a, b) = (node(&nats, &flags), node(&nats, &flags));
    let _ann = owner(a.addr, "ann").await;
    let (mut dan, _) = TestClient::hello(b.addr, "dan").await;
    let refused = dan
        .request(json!({"type":"register","secret":SECRET}))
        .await;
    assert_eq!(refused["code"], "too_many_accounts", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accounts_a_secret_on_another_node_takes_the_session_over() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, &[]), node(&nats, &[]));
    let mut old = owner(a.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(a.addr, "bob").await;
    old.skip_until("join").await;
    // A wrong secret on B changes nothing.
    assert_code(b.addr, "ann", Some("not the secret"), "nick_registered").await;

    let mut new = TestClient::connect(b.addr).await;
    let welcome = new
        .request(json!({"type":"hello","nick":"ann","secret":SECRET}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["nick"], "ann", "{welcome}");
    let frames = old.read_to_close().await;
    let bye = frames.last().unwrap();
    assert_eq!(
        (&bye["type"], &bye["reason"]),
        (&json!("bye"), &json!("replaced")),
        "{frames:?}"
    );
    assert_eq!(
        bob.skip_until("quit").await,
        json!({"type":"quit","nick":"ann","reason":"replaced"})
    );
    // The claim passed to B: a DM from A reaches the new session there.
    let ok = bob
        .request(json!({"type":"dm","to":"ann","text":"is that you?"}))
        .await;
    assert_eq!(ok["cmd"], "dm", "{ok}");
    let direct = new.skip_until("direct").await;
    assert_eq!(
        (&direct["from"], &direct["text"]),
        (&json!("bob"), &json!("is that you?"))
    );
    // And A does not give the nick to anyone else.
    assert_code(a.addr, "ann", None, "nick_registered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accounts_register_and_unregister_without_nats_are_unavailable_and_change_nothing()
{
    let mut nats = Nats::start();
    let (a, b) = (node(&nats, &[]), node(&nats, &[]));
    let mut eve = owner(a.addr, "eve").await;
    let (mut dan, _) = TestClient::hello(b.addr, "dan").await;
    nats.kill();
    let register = json!({"type":"register","secret":SECRET});
    let refused = dan.request(register.clone()).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    let refused = eve.request(json!({"type":"unregister"})).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    nats.restart();
    // Once NATS is back (the nodes reconnect by themselves), nothing was half-done: dan
    // registers as a new account, and eve is still registered.
    let deadline = Instant::now() + WAIT;
    let ok = loop {
        let reply = dan.request(register.clone()).await;
        if reply["code"] != "unavailable" || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ok["cmd"], "register", "{ok}");
    // Node A's watch of the bucket goes on after the outage: it knows dan's account.
    assert_code(a.addr, "dan", None, "nick_registered").await;
    leave(eve).await;
    let (_c, refused) = hello(b.addr, "eve", None).await;
    assert_eq!(refused["code"], "nick_registered", "{refused}");
}
