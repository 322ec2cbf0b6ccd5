//! Cluster mode (issue 19): a JetStream server on loopback and lanchat nodes joined through it
//! act as one chat. Every test starts its own `nats-server` (tests/src/nats.rs); a missing one
//! fails the test with the line that installs it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lanchat_tests::nats::Nats;
use lanchat_tests::{ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};

/// Budgets off: the tests send in bursts.
const FLAGS: &[&str] = &["--rate-per-sec", "0"];

fn nodes(nats: &Nats, n: usize, extra: &[&str]) -> Vec<ServerProcess> {
    let mut flags = FLAGS.to_vec();
    flags.extend_from_slice(extra);
    (0..n).map(|_| nats.node("test", &flags)).collect()
}

/// The next frame that `pred` accepts; others are skipped (each read bounded by [`WAIT`]).
/// (Shared with the other cluster test files.)
pub(crate) async fn until(c: &mut TestClient, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "{}: no {what} within {WAIT:?}",
            c.nick
        );
        let v = c.recv().await;
        if pred(&v) {
            return v;
        }
    }
}

async fn joined(c: &mut TestClient, room: &str) -> Value {
    let ok = c.request(json!({"type":"join","room":room})).await;
    assert_eq!(ok["cmd"], "join", "{ok}");
    ok
}

/// Ask `who` until `nick` is listed in `room` (the node learns remote members from the stream,
/// so a moment after the join); panics after [`WAIT`].
async fn wait_for_member(c: &mut TestClient, room: &str, nick: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let who = c.request(json!({"type":"who","room":room})).await;
        let listed = who["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["nick"] == nick));
        if listed {
            return who;
        }
        assert!(
            Instant::now() < deadline,
            "{nick} never listed in {room}: {who}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_chat_in_one_room() {
    let nats = Nats::start();
    let nodes = nodes(&nats, 3, &[]);
    let (mut ann, welcome) = TestClient::hello(nodes[0].addr, "ann").await;
    assert_eq!(welcome["cluster"], "test", "{welcome}");
    joined(&mut ann, "dev").await;
    let (mut bob, _) = TestClient::hello(nodes[1].addr, "bob").await;
    joined(&mut bob, "dev").await;
    let (mut cat, _) = TestClient::hello(nodes[2].addr, "cat").await;
    joined(&mut cat, "dev").await;
    // Joins cross nodes.
    for (c, nicks) in [(&mut ann, &["bob", "cat"][..]), (&mut bob, &["cat"][..])] {
        for nick in nicks {
            let j = until(c, "join", |v| v["type"] == "join" && v["room"] == "dev").await;
            assert_eq!(j, json!({"type":"join","room":"dev","nick":nick}));
        }
    }
    // `who` lists every node's members.
    let who = wait_for_member(&mut cat, "dev", "ann").await;
    wait_for_member(&mut cat, "dev", "bob").await;
    assert_eq!(who["members"].as_array().unwrap().len(), 3, "{who}");

    // A message from each node reaches the other two, the same line everywhere.
    let ok = ann
        .request(json!({"type":"say","room":"dev","text":"hi from 0"}))
        .await;
    assert_eq!(ok["cmd"], "say", "{ok}");
    let id = ok["id"].clone();
    for c in [&mut bob, &mut cat] {
        let m = until(c, "message", |v| v["type"] == "message").await;
        assert_eq!(
            m,
            json!({"type":"message","id":id,"ts":ok["ts"],"room":"dev","from":"ann","text":"hi from 0"})
        );
    }
    let ok = cat
        .request(json!({"type":"say","room":"dev","text":"hi from 2"}))
        .await;
    for c in [&mut ann, &mut bob] {
        let m = until(c, "message", |v| v["type"] == "message").await;
        assert_eq!((&m["id"], &m["text"]), (&ok["id"], &json!("hi from 2")));
    }
    // The sender is not sent its own message.
    ann.assert_quiet().await;

    // A leave on one node is seen on the others, and `who` follows.
    bob.request(json!({"type":"leave","room":"dev"})).await;
    for c in [&mut ann, &mut cat] {
        let l = until(c, "leave", |v| v["type"] == "leave").await;
        assert_eq!(l, json!({"type":"leave","room":"dev","nick":"bob"}));
    }
    let who = ann.request(json!({"type":"who","room":"dev"})).await;
    let nicks: Vec<&str> = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["nick"].as_str().unwrap())
        .collect();
    assert_eq!(nicks, ["ann", "cat"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_senders_on_three_nodes_every_member_sees_one_order() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 50;
    const TOTAL: usize = SENDERS * PER_SENDER;
    let nats = Nats::start();
    let nodes = nodes(&nats, 3, &[]);
    let mut listeners = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (mut c, _) = TestClient::hello(node.addr, &format!("l{i}")).await;
        joined(&mut c, "busy").await;
        listeners.push(c);
    }
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let (mut c, _) = TestClient::hello(nodes[i % 3].addr, &format!("s{i}")).await;
        joined(&mut c, "busy").await;
        senders.push(c);
    }
    // A join's `ok` comes before the join is stored, and a member receives only the room's events
    // stored after its join: wait until every join is in the stream (the first listener has seen
    // them all) before anyone sends.
    let mut awaited: std::collections::HashSet<String> = (1..3)
        .map(|i| format!("l{i}"))
        .chain((0..SENDERS).map(|i| format!("s{i}")))
        .collect();
    while !awaited.is_empty() {
        let v = until(&mut listeners[0], "joins", |v| v["type"] == "join").await;
        awaited.remove(v["nick"].as_str().unwrap_or_default());
    }
    let mut tasks = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for k in 0..PER_SENDER {
                s.send(json!({"id":k,"type":"say","room":"busy","text":format!("s{i}-{k}")}))
                    .await;
            }
            let (mut seen, mut oks) = (Vec::new(), 0);
            while seen.len() < TOTAL - PER_SENDER || oks < PER_SENDER {
                let v = s.recv().await;
                match v["type"].as_str() {
                    Some("message") => seen.push(v["id"].as_str().unwrap().to_owned()),
                    Some("ok") if v["cmd"] == "say" => oks += 1,
                    Some("error") => panic!("s{i}: {v}"),
                    _ => {}
                }
            }
            (format!("s{i}"), seen)
        }));
    }
    let mut orders: Vec<(String, Vec<String>)> = Vec::new();
    let mut from: HashMap<String, String> = HashMap::new();
    for l in &mut listeners {
        let mut seen = Vec::new();
        while seen.len() < TOTAL {
            let v = l.recv().await;
            if v["type"] == "message" {
                let id = v["id"].as_str().unwrap().to_owned();
                from.insert(id.clone(), v["from"].as_str().unwrap().to_owned());
                seen.push(id);
            }
        }
        orders.push((l.nick.clone(), seen));
    }
    let reference = orders[0].1.clone();
    let unique: std::collections::HashSet<&String> = reference.iter().collect();
    assert_eq!(unique.len(), TOTAL, "a message delivered twice");
    for (nick, order) in &orders {
        assert_eq!(order, &reference, "{nick} saw another order");
    }
    for task in tasks {
        let (nick, seen) = task.await.unwrap();
        let expected: Vec<String> = reference
            .iter()
            .filter(|id| from[*id] != nick)
            .cloned()
            .collect();
        assert_eq!(seen, expected, "{nick} saw another order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nick_raced_on_two_nodes_is_won_exactly_once() {
    let nats = Nats::start();
    let nodes = nodes(&nats, 2, &[]);
    let mut keep = Vec::new();
    for round in 0..20 {
        let nick = format!("race{round}");
        // The same nick, folded alike, spelt differently on each side.
        let upper = nick.to_uppercase();
        let hello = |addr, nick: String| async move {
            let mut c = TestClient::connect(addr).await;
            let r = c.request(json!({"type":"hello","nick":nick})).await;
            (c, r)
        };
        let ((a, ra), (b, rb)) = tokio::join!(
            hello(nodes[0].addr, nick.clone()),
            hello(nodes[1].addr, upper)
        );
        one_won(&ra, &rb, |r| r["type"] == "welcome", round);
        keep.push((a, b));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_acknowledged_message_and_frees_its_nicks() {
    let nats = Nats::start();
    let lease = 3;
    let mut nodes = nodes(&nats, 2, &["--cluster-lease-secs", "3"]);
    let (mut ann, _) = TestClient::hello(nodes[0].addr, "ann").await;
    joined(&mut ann, "k").await;
    let (mut bob, _) = TestClient::hello(nodes[1].addr, "bob").await;
    joined(&mut bob, "k").await;
    wait_for_member(&mut bob, "k", "ann").await;
    // Pipelined: every `ok` that arrives is a message JetStream stored.
    for i in 0..20 {
        ann.send(json!({"id":i,"type":"say","room":"k","text":format!("m{i}")}))
            .await;
    }
    let mut acked = Vec::new();
    while acked.len() < 20 {
        let v = ann.recv().await;
        if v["type"] == "ok" && v["cmd"] == "say" {
            acked.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    nodes[0].kill();
    let killed_at = Instant::now();
    let h = bob
        .request(json!({"type":"history","room":"k","limit":100}))
        .await;
    let ids: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, acked, "history on the surviving node");
    // The dead node's users are gone from the others within the lease (and a bit).
    let quit = until(&mut bob, "quit", |v| v["type"] == "quit").await;
    assert_eq!(
        quit,
        json!({"type":"quit","nick":"ann","reason":"node lost"})
    );
    // Its nicks are free within the lease plus slack.
    let deadline = killed_at + Duration::from_secs(lease + 5);
    loop {
        let mut c = TestClient::connect(nodes[1].addr).await;
        let r = c.request(json!({"type":"hello","nick":"ann"})).await;
        if r["type"] == "welcome" {
            break;
        }
        assert_eq!(r["code"], "nick_taken", "{r}");
        assert!(
            Instant::now() < deadline,
            "ann still taken {:?} after the kill",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_answers_history_from_the_stream() {
    let nats = Nats::start();
    let first = nodes(&nats, 1, &[]);
    let (mut ann, _) = TestClient::hello(first[0].addr, "ann").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let ok = ann
            .request(json!({"type":"say","room":"lobby","text":format!("m{i}")}))
            .await;
        ids.push(ok["id"].as_str().unwrap().to_owned());
    }
    let late = nodes(&nats, 1, &[]);
    let (mut bob, _) = TestClient::hello(late[0].addr, "bob").await;
    let texts = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    // The late node reads the stream after it says it listens: wait until it has.
    let deadline = Instant::now() + WAIT;
    loop {
        let h = bob
            .request(json!({"type":"history","room":"lobby","limit":3}))
            .await;
        if texts(&h) == ["m7", "m8", "m9"] {
            break;
        }
        assert!(Instant::now() < deadline, "history never loaded: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = bob
        .request(json!({"type":"history","room":"lobby","before":ids[5],"limit":2}))
        .await;
    assert_eq!(texts(&h), ["m3", "m4"]);
    let h = bob
        .request(json!({"type":"history","room":"lobby","after":ids[5],"limit":2}))
        .await;
    assert_eq!(texts(&h), ["m6", "m7"]);
    let h = bob
        .request(json!({"type":"history","room":"LOBBY","after":ids[2],"before":ids[6]}))
        .await;
    assert_eq!(texts(&h), ["m3", "m4", "m5"]);
    // It learnt ann (joined before it started) from the other node's answer.
    wait_for_member(&mut bob, "lobby", "ann").await;
}

#[test]
fn an_unreachable_nats_stops_the_start_with_exit_code_3() {
    let state = lanchat_tests::TempDir::new("cluster-exit");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = lanchat_tests::run_server_to_exit(&["--no-tls", "--cluster", &url], state.path());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach NATS"), "{stderr}");
    let out = lanchat_tests::run_server_to_exit(
        &["--cluster", &url, "--cluster-name", "a.b"],
        state.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_chat_loses_nothing_acknowledged() {
    let mut nats = Nats::start();
    let nodes = nodes(&nats, 2, &[]);
    let (mut ann, _) = TestClient::hello(nodes[0].addr, "ann").await;
    joined(&mut ann, "r").await;
    let (mut bob, _) = TestClient::hello(nodes[1].addr, "bob").await;
    joined(&mut bob, "r").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let ok = ann
            .request(json!({"type":"say","room":"r","text":format!("before {i}")}))
            .await;
        acked.push(ok["id"].as_str().unwrap().to_owned());
    }
    nats.kill();
    // While NATS is away: sessions stay, and a message is refused, not buffered.
    let refused = ann
        .request(json!({"type":"say","room":"r","text":"while down"}))
        .await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    bob.sync().await;
    nats.restart();
    // Back: a message is stored again once the node has reconnected.
    let deadline = Instant::now() + WAIT;
    loop {
        let r = ann
            .request(json!({"type":"say","room":"r","text":"after"}))
            .await;
        if r["type"] == "ok" {
            acked.push(r["id"].as_str().unwrap().to_owned());
            break;
        }
        assert_eq!(r["code"], "unavailable", "{r}");
        assert!(Instant::now() < deadline, "never stored again: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = tokio::time::timeout(
        WAIT,
        until(&mut bob, "the message after", |v| {
            v["type"] == "message" && v["text"] == "after"
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("bob's node:\n{}", nodes[1].stderr_text()));
    assert_eq!(after["id"].as_str(), acked.last().map(|s| s.as_str()));
    let h = bob
        .request(json!({"type":"history","room":"r","limit":100}))
        .await;
    let ids: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, acked, "history after the restart: {h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_reaches_a_user_on_another_node() {
    let nats = Nats::start();
    let nodes = nodes(&nats, 2, &[]);
    let (mut ann, _) = TestClient::hello(nodes[0].addr, "ann").await;
    let (mut bob, _) = TestClient::hello(nodes[1].addr, "Bob").await;
    let ok = bob
        .request(json!({"type":"status","status":"away","text":"lunch"}))
        .await;
    assert_eq!(ok["cmd"], "status", "{ok}");
    let ok = ann
        .request(json!({"type":"dm","to":"bob","text":"psst"}))
        .await;
    assert_eq!(ok["cmd"], "dm", "{ok}");
    assert_eq!(
        (&ok["to"], &ok["away"], &ok["away_text"]),
        (&json!("Bob"), &json!(true), &json!("lunch"))
    );
    let direct = until(&mut bob, "direct", |v| v["type"] == "direct").await;
    assert_eq!(
        (&direct["id"], &direct["from"], &direct["text"]),
        (&ok["id"], &json!("ann"), &json!("psst"))
    );
    // Busy with no text: still reported, as on one server.
    let ok = bob.request(json!({"type":"status","status":"busy"})).await;
    assert_eq!(ok["cmd"], "status", "{ok}");
    let ok = ann
        .request(json!({"type":"dm","to":"bob","text":"now?"}))
        .await;
    assert_eq!(
        (&ok["away"], &ok["away_text"]),
        (&json!(true), &Value::Null),
        "{ok}"
    );
    let direct = until(&mut bob, "direct", |v| v["type"] == "direct").await;
    assert_eq!(direct["text"], "now?");
    // And back, to a user who is not away.
    let ok = bob
        .request(json!({"type":"dm","to":"ANN","text":"later"}))
        .await;
    assert_eq!(
        (&ok["cmd"], &ok["to"], &ok["away"]),
        (&json!("dm"), &json!("ann"), &Value::Null)
    );
    let direct = until(&mut ann, "direct", |v| v["type"] == "direct").await;
    assert_eq!(direct["text"], "later");
    // Nobody anywhere: as on one server.
    let refused = ann
        .request(json!({"type":"dm","to":"nobody","text":"hello?"}))
        .await;
    assert_eq!(refused["code"], "no_such_nick", "{refused}");
}

/// More messages than `--history` right after a join (as a node starts, before its consumer has
/// caught up): the joiner gets every one, and history keeps the last `--history`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_gets_every_message_even_beyond_the_history_limit() {
    let nats = Nats::start();
    let nodes = nodes(&nats, 1, &["--history", "5"]);
    let (mut ann, _) = TestClient::hello(nodes[0].addr, "ann").await;
    joined(&mut ann, "h").await;
    let (mut bob, _) = TestClient::hello(nodes[0].addr, "bob").await;
    joined(&mut bob, "h").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let ok = bob
            .request(json!({"type":"say","room":"h","text":format!("m{i}")}))
            .await;
        ids.push(ok["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    while seen.len() < ids.len() {
        let m = until(&mut ann, "message", |v| v["type"] == "message").await;
        seen.push(m["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ids);
    let h = ann
        .request(json!({"type":"history","room":"h","limit":100}))
        .await;
    let kept: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        ids[15..].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

/// The `rooms` page after `after` as (name, members) pairs, and its `next`.
async fn rooms_page(
    c: &mut TestClient,
    after: Option<&str>,
    limit: u64,
) -> (Vec<(String, u64)>, Value) {
    let mut req = json!({"type":"rooms","limit":limit});
    if let Some(after) = after {
        req["after"] = json!(after);
    }
    let ok = c.request(req).await;
    assert_eq!(ok["cmd"], "rooms", "{ok}");
    let rooms = ok["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["members"].as_u64().unwrap(),
            )
        })
        .collect();
    (rooms, ok["next"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_lists_every_nodes_rooms_but_private_ones_to_non_members() {
    let nats = Nats::start();
    let nodes = nodes(&nats, 2, &[]);
    let (mut ann, _) = TestClient::hello(nodes[0].addr, "ann").await;
    joined(&mut ann, "dev").await;
    let (mut bob, _) = TestClient::hello(nodes[1].addr, "bob").await;
    let (mut cat, _) = TestClient::hello(nodes[1].addr, "cat").await;
    for room in ["dev", "ops", "qa"] {
        joined(&mut bob, room).await;
    }
    joined(&mut cat, "ops").await;
    let mode = bob
        .request(json!({"type":"mode","room":"ops","invite_only":true}))
        .await;
    assert_eq!(mode["invite_only"], true, "{mode}");
    // The last of bob's events: once node A lists it, node A has read the ones before.
    joined(&mut cat, "zoo").await;

    let deadline = Instant::now() + WAIT;
    let listed = loop {
        let (rooms, next) = rooms_page(&mut ann, None, 500).await;
        assert!(next.is_null(), "{next}");
        if rooms.iter().any(|(name, _)| name == "zoo") {
            break rooms;
        }
        assert!(
            Instant::now() < deadline,
            "zoo never listed on node A: {rooms:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let want = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    };
    // The lobby (everyone joins it at hello) and dev with members on both nodes, and bob's and
    // cat's rooms; not ops, private on node B and ann not in it.
    assert_eq!(
        listed,
        want(&[("dev", 2), ("lobby", 3), ("qa", 1), ("zoo", 1)])
    );
    // The same a page at a time.
    let (page, next) = rooms_page(&mut ann, None, 2).await;
    assert_eq!(
        (page, next),
        (want(&[("dev", 2), ("lobby", 3)]), json!("lobby"))
    );
    let (page, next) = rooms_page(&mut ann, Some("lobby"), 2).await;
    assert_eq!(page, want(&[("qa", 1), ("zoo", 1)]));
    assert!(next.is_null(), "{next}");
    // On node B, where ops is private, its members see it.
    let (on_b, _) = rooms_page(&mut cat, None, 500).await;
    assert!(on_b.contains(&("ops".into(), 2)), "{on_b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_takes_a_nick_over_from_a_session_of_the_same_node() {
    const SECRET: &str = "tWv2x9Qm4bLk7rZp";
    let nats = Nats::start();
    let nodes = nodes(&nats, 2, &[]);
    let (mut old, _) = TestClient::hello(nodes[0].addr, "ann").await;
    let ok = old
        .request(json!({"type":"register","secret":SECRET}))
        .await;
    assert_eq!(ok["cmd"], "register", "{ok}");
    let (mut bob, _) = TestClient::hello(nodes[1].addr, "bob").await;
    wait_for_member(&mut bob, "lobby", "ann").await;

    let mut new = TestClient::connect(nodes[0].addr).await;
    let welcome = new
        .request(json!({"type":"hello","nick":"ann","secret":SECRET}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["nick"], "ann", "{welcome}");
    let frames = old.read_to_close().await;
    assert_eq!(frames.last().unwrap()["reason"], "replaced", "{frames:?}");
    let quit = until(&mut bob, "ann's quit", |v| v["type"] == "quit").await;
    assert_eq!(
        quit,
        json!({"type":"quit","nick":"ann","reason":"replaced"})
    );

    // Node B refuses the nick without its secret, as one server would (its account is the
    // cluster's), and the claim passed from one session to the other: a DM from B reaches the
    // new session.
    let mut thief = TestClient::connect(nodes[1].addr).await;
    let refused = thief.request(json!({"type":"hello","nick":"ann"})).await;
    assert_eq!(refused["code"], "nick_registered", "{refused}");
    let ok = bob
        .request(json!({"type":"dm","to":"ann","text":"still you?"}))
        .await;
    assert_eq!(ok["cmd"], "dm", "{ok}");
    let direct = until(&mut new, "the dm", |v| v["type"] == "direct").await;
    assert_eq!(direct["text"], "still you?");
    // The new session says what a user sees, on both nodes.
    new.request(json!({"type":"say","room":"lobby","text":"it is me again"}))
        .await;
    let m = until(&mut bob, "the message", |v| v["type"] == "message").await;
    assert_eq!(
        (&m["from"], &m["text"]),
        (&json!("ann"), &json!("it is me again"))
    );

    // Once the new session quits, the nick is free cluster-wide again (for its secret).
    new.request(json!({"type":"quit"})).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = thief
            .request(json!({"type":"hello","nick":"ann","secret":SECRET}))
            .await;
        if reply["type"] == "welcome" {
            break;
        }
        assert_eq!(reply["code"], "nick_taken", "{reply}");
        assert!(Instant::now() < deadline, "ann never freed: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Of two answers to the same race, exactly one `won`; the other is refused `nick_taken`.
/// Returns the winner.
pub(crate) fn one_won<'a>(
    ra: &'a Value,
    rb: &'a Value,
    won: impl Fn(&Value) -> bool,
    round: impl std::fmt::Display,
) -> &'a Value {
    assert!(
        won(ra) != won(rb),
        "round {round}: exactly one wins: {ra} / {rb}"
    );
    let (winner, lost) = if won(ra) { (ra, rb) } else { (rb, ra) };
    assert_eq!(lost["code"], "nick_taken", "round {round}: {lost}");
    winner
}
