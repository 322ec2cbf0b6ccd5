//! Private rooms in cluster mode (issue 19): a room's modes, key, operators and invitations are
//! one set of rules for the whole cluster, checked on whichever node a request arrives on. Each
//! test waits for what a user sees (an event, a listing) before relying on another node having
//! read a change.

use std::time::{Duration, Instant};

use lanchat_tests::nats::Nats;
use lanchat_tests::{ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};

use crate::cluster::until;

/// Budgets off: the tests send in bursts.
fn node(nats: &Nats) -> ServerProcess {
    nats.node("test", &["--rate-per-sec", "0"])
}

/// The reply to `frame`, its `re` left out.
async fn answer(c: &mut TestClient, frame: Value) -> Value {
    let mut r = c.request(frame).await;
    r.as_object_mut().unwrap().remove("re");
    r
}

async fn joined(c: &mut TestClient, room: &str) -> Value {
    let ok = c.request(json!({"type":"join","room":room})).await;
    assert_eq!(ok["cmd"], "join", "{}: {ok}", c.nick);
    ok
}

/// The code of the error `frame` is refused with.
async fn refused(c: &mut TestClient, frame: Value) -> String {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["type"], "error", "{}: {frame} was accepted: {r}", c.nick);
    r["code"].as_str().unwrap().to_owned()
}

/// Ask `c`'s node, every 50 ms, until `pred` holds of the reply to `frame`; panics after
/// [`WAIT`].
async fn poll(
    c: &mut TestClient,
    frame: Value,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = c.request(frame.clone()).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{}: {what} never: {r}", c.nick);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lists(r: &Value, key: &str, name: &str, field: &str) -> bool {
    r[key]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x[field] == name))
}

/// Wait until `c`'s node lists `room` with `members` members (it has read their joins).
async fn listed_with(c: &mut TestClient, room: &str, members: usize) {
    poll(c, json!({"type":"rooms"}), &format!("{room} listed"), |r| {
        r["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == room && x["members"] == members)
    })
    .await;
}

/// What `c` is told by `who`, `topic` and `history` about `room`, ids left out.
async fn readings(c: &mut TestClient, room: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for ty in ["who", "topic", "history"] {
        out.push(answer(c, json!({"type":ty,"room":room})).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_only_on_one_node_refuses_a_join_on_another_until_an_invite_from_either() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    let (mut wit, _) = TestClient::hello(b.addr, "wit").await;
    let (mut bob, _) = TestClient::hello(b.addr, "bob").await;
    let ok = joined(&mut ann, "Secret").await;
    assert_eq!(
        ok["members"],
        json!([{"nick":"ann","status":"online","op":true}])
    );
    // b knows the room ann made (else wit, joining it there first, would make it too).
    listed_with(&mut wit, "Secret", 1).await;
    joined(&mut wit, "secret").await;
    ann.request(json!({"type":"say","room":"secret","text":"before"}))
        .await;
    ann.request(json!({"type":"topic","room":"secret","topic":"plans"}))
        .await;
    // bob, on b, sees the public room with both its members.
    listed_with(&mut bob, "Secret", 2).await;
    let ok = ann
        .request(json!({"type":"mode","room":"secret","invite_only":true}))
        .await;
    assert_eq!(ok["invite_only"], true, "{ok}");
    // wit, a member on b, is told; from then on b holds the room private.
    let mode = until(&mut wit, "mode", |v| v["type"] == "mode").await;
    assert_eq!(
        mode,
        json!({"type":"mode","room":"Secret","by":"ann","invite_only":true,"has_key":false,"topic_lock":false})
    );
    assert_eq!(
        refused(&mut bob, json!({"type":"join","room":"secret"})).await,
        "not_invited"
    );
    // To bob, not a member, the room reads as one that does not exist, and is not listed.
    assert_eq!(
        readings(&mut bob, "Secret").await,
        readings(&mut bob, "Nowhere")
            .await
            .into_iter()
            .map(|mut v| {
                rename(&mut v, "Nowhere", "Secret");
                v
            })
            .collect::<Vec<_>>()
    );
    let rooms = bob.request(json!({"type":"rooms"})).await;
    assert!(!lists(&rooms, "rooms", "Secret", "name"), "{rooms}");
    // wit, a member on b, still reads it all.
    let who = wit.request(json!({"type":"who","room":"secret"})).await;
    assert!(
        lists(&who, "members", "ann", "nick") && lists(&who, "members", "wit", "nick"),
        "{who}"
    );
    let h = wit.request(json!({"type":"history","room":"secret"})).await;
    assert_eq!(h["messages"][0]["text"], "before", "{h}");

    // An invitation from ann, on a, to bob on b: he is told, and gets in once.
    let ok = ann
        .request(json!({"type":"invite","room":"secret","nick":"bob"}))
        .await;
    assert_eq!(
        (&ok["cmd"], &ok["nick"]),
        (&json!("invite"), &json!("bob")),
        "{ok}"
    );
    let invite = until(&mut bob, "invite", |v| v["type"] == "invite").await;
    assert_eq!(invite, json!({"type":"invite","room":"Secret","by":"ann"}));
    let ok = joined(&mut bob, "secret").await;
    assert_eq!(ok["topic"], "plans", "{ok}");
    let j = until(&mut ann, "bob's join", |v| {
        v["type"] == "join" && v["room"] == "Secret" && v["nick"] == "bob"
    })
    .await;
    assert_eq!(j["nick"], "bob");
    // Used: after leaving, bob needs another invitation, which wit (made an operator) gives.
    bob.request(json!({"type":"leave","room":"secret"})).await;
    until(&mut wit, "bob's leave", |v| {
        v["type"] == "leave" && v["nick"] == "bob"
    })
    .await;
    assert_eq!(
        refused(&mut bob, json!({"type":"join","room":"secret"})).await,
        "not_invited"
    );
    ann.request(json!({"type":"op","room":"secret","nick":"wit"}))
        .await;
    poll(
        &mut wit,
        json!({"type":"who","room":"secret"}),
        "wit an operator on b",
        |r| {
            r["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["nick"] == "wit" && m["op"] == true)
        },
    )
    .await;
    let ok = wit
        .request(json!({"type":"invite","room":"secret","nick":"bob"}))
        .await;
    assert_eq!(ok["cmd"], "invite", "{ok}");
    joined(&mut bob, "secret").await;
}

fn rename(v: &mut Value, from: &str, to: &str) {
    if v["room"] == from {
        v["room"] = json!(to);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_on_one_node_is_asked_on_another_and_never_shown() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let (mut bob, _) = TestClient::hello(b.addr, "bob").await;
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    let (mut cat, _) = TestClient::hello(a.addr, "cat").await;
    joined(&mut bob, "vault").await;
    listed_with(&mut ann, "vault", 1).await;
    joined(&mut ann, "vault").await;
    until(&mut bob, "ann's join", |v| {
        v["type"] == "join" && v["room"] == "vault" && v["nick"] == "ann"
    })
    .await;
    let ok = bob
        .request(json!({"type":"mode","room":"vault","key":"open sesame"}))
        .await;
    assert_eq!(ok["has_key"], true, "{ok}");
    // ann, a member on a, is told there is a key, never what it is.
    let mode = until(&mut ann, "mode", |v| v["type"] == "mode").await;
    assert_eq!(
        mode,
        json!({"type":"mode","room":"vault","by":"bob","invite_only":false,"has_key":true,"topic_lock":false})
    );
    for wrong in [
        json!({"type":"join","room":"vault","key":"nope"}),
        json!({"type":"join","room":"vault"}),
    ] {
        assert_eq!(refused(&mut cat, wrong).await, "bad_key");
    }
    let ok = cat
        .request(json!({"type":"join","room":"vault","key":"open sesame"}))
        .await;
    assert_eq!(ok["cmd"], "join", "{ok}");
    until(&mut bob, "cat's join", |v| {
        v["type"] == "join" && v["room"] == "vault" && v["nick"] == "cat"
    })
    .await;
    // The key cleared on a: joins on b need none.
    let (mut dan, _) = TestClient::hello(b.addr, "dan").await;
    bob.request(json!({"type":"op","room":"vault","nick":"ann"}))
        .await;
    poll(
        &mut ann,
        json!({"type":"mode","room":"vault","key":null}),
        "ann an operator on a",
        |r| r["type"] == "ok",
    )
    .await;
    let mode = until(&mut bob, "mode", |v| v["type"] == "mode").await;
    assert_eq!(mode["has_key"], false, "{mode}");
    joined(&mut dan, "vault").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_given_on_one_node_lets_its_user_on_another_set_modes_and_the_locked_topic() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    let (mut cat, _) = TestClient::hello(a.addr, "cat").await;
    let (mut bob, _) = TestClient::hello(b.addr, "bob").await;
    joined(&mut ann, "dev").await;
    joined(&mut cat, "dev").await;
    listed_with(&mut bob, "dev", 2).await;
    joined(&mut bob, "dev").await;
    until(&mut ann, "bob's join", |v| {
        v["type"] == "join" && v["room"] == "dev" && v["nick"] == "bob"
    })
    .await;
    // Not an operator anywhere yet.
    assert_eq!(
        refused(
            &mut bob,
            json!({"type":"mode","room":"dev","topic_lock":true})
        )
        .await,
        "not_operator"
    );
    let ok = ann
        .request(json!({"type":"op","room":"dev","nick":"bob"}))
        .await;
    assert_eq!(
        (&ok["cmd"], &ok["nick"]),
        (&json!("op"), &json!("bob")),
        "{ok}"
    );
    // b shows him as an operator once it has read the change; a shows it at once.
    poll(
        &mut bob,
        json!({"type":"who","room":"dev"}),
        "bob an operator on b",
        |r| {
            r["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["nick"] == "bob" && m["op"] == true)
        },
    )
    .await;
    let who = cat.request(json!({"type":"who","room":"dev"})).await;
    let ops: Vec<&str> = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["op"] == true)
        .map(|m| m["nick"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["ann", "bob"], "{who}");
    let ok = bob
        .request(json!({"type":"mode","room":"dev","topic_lock":true}))
        .await;
    assert_eq!(ok["topic_lock"], true, "{ok}");
    for c in [&mut ann, &mut cat] {
        let mode = until(c, "mode", |v| v["type"] == "mode").await;
        assert_eq!(
            (&mode["by"], &mode["topic_lock"]),
            (&json!("bob"), &json!(true)),
            "{mode}"
        );
    }
    // The lock holds on a for cat, no operator; bob, one, sets the topic from b.
    assert_eq!(
        refused(
            &mut cat,
            json!({"type":"topic","room":"dev","topic":"mine"})
        )
        .await,
        "not_operator"
    );
    let ok = bob
        .request(json!({"type":"topic","room":"dev","topic":"ours"}))
        .await;
    assert_eq!(ok["topic"], "ours", "{ok}");
    let t = until(&mut cat, "topic", |v| v["type"] == "topic").await;
    assert_eq!(
        t,
        json!({"type":"topic","room":"dev","topic":"ours","by":"bob"})
    );
    // And on b for a member who is none.
    let (mut dan, _) = TestClient::hello(b.addr, "dan").await;
    joined(&mut dan, "dev").await;
    assert_eq!(
        refused(
            &mut dan,
            json!({"type":"topic","room":"dev","topic":"dan's"})
        )
        .await,
        "not_operator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_a_room_went_private_enforces_it() {
    let nats = Nats::start();
    let a = node(&nats);
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    joined(&mut ann, "Secret").await;
    ann.request(json!({"type":"mode","room":"secret","invite_only":true,"key":"k"}))
        .await;
    ann.request(json!({"type":"say","room":"secret","text":"hidden"}))
        .await;
    ann.request(json!({"type":"say","room":"lobby","text":"marker"}))
        .await;
    let late = node(&nats);
    let (mut dan, _) = TestClient::hello(late.addr, "dan").await;
    // The late node has read the stream up to the marker, after the room's changes.
    poll(
        &mut dan,
        json!({"type":"history","room":"lobby"}),
        "the marker in history",
        |r| lists(r, "messages", "marker", "text"),
    )
    .await;
    for key in [json!("k"), json!("wrong"), Value::Null] {
        assert_eq!(
            refused(&mut dan, json!({"type":"join","room":"secret","key":key})).await,
            "not_invited"
        );
    }
    let h = answer(&mut dan, json!({"type":"history","room":"secret"})).await;
    assert_eq!(h["messages"], json!([]), "{h}");
    let who = answer(&mut dan, json!({"type":"who","room":"secret"})).await;
    assert_eq!(who["members"], json!([]), "{who}");
    let rooms = dan.request(json!({"type":"rooms"})).await;
    assert!(!lists(&rooms, "rooms", "Secret", "name"), "{rooms}");
    // An invitation from a counts on the late node.
    poll(
        &mut ann,
        json!({"type":"who","room":"lobby"}),
        "dan known on a",
        |r| lists(r, "members", "dan", "nick"),
    )
    .await;
    ann.request(json!({"type":"invite","room":"secret","nick":"dan"}))
        .await;
    until(&mut dan, "invite", |v| v["type"] == "invite").await;
    let ok = joined(&mut dan, "secret").await;
    assert!(
        lists(&ok["members"], "", "ann", "nick")
            || ok["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["nick"] == "ann" && m["op"] == true),
        "{ok}"
    );
    let h = dan.request(json!({"type":"history","room":"secret"})).await;
    assert_eq!(h["messages"][0]["text"], "hidden", "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_from_one_node_removes_a_member_held_by_another() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(b.addr, "bob").await;
    let (mut cat, _) = TestClient::hello(b.addr, "cat").await;
    let (mut eve, _) = TestClient::hello(a.addr, "eve").await;
    joined(&mut ann, "dev").await;
    listed_with(&mut bob, "dev", 1).await;
    for c in [&mut bob, &mut cat, &mut eve] {
        joined(c, "dev").await;
    }
    // Their joins, in whatever order the nodes' publishers put them in the stream.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let j = until(&mut ann, "a join", |v| {
            v["type"] == "join" && v["room"] == "dev"
        })
        .await;
        seen.push(j["nick"].as_str().unwrap().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["bob", "cat", "eve"]);
    let ok = ann
        .request(json!({"type":"kick","room":"dev","nick":"bob","reason":"spam"}))
        .await;
    assert_eq!(
        (&ok["cmd"], &ok["nick"]),
        (&json!("kick"), &json!("bob")),
        "{ok}"
    );
    let leave = json!({"type":"leave","room":"dev","nick":"bob","kicked_by":"ann","reason":"spam"});
    // bob himself, cat beside him on b, and eve on a are told, once each.
    for c in [&mut bob, &mut cat, &mut eve] {
        let l = until(c, "the kick", |v| v["type"] == "leave").await;
        assert_eq!(l, leave, "{}", c.nick);
    }
    // bob is out on his node: he may not speak there, and nobody lists him.
    assert_eq!(
        refused(
            &mut bob,
            json!({"type":"say","room":"dev","text":"still here?"})
        )
        .await,
        "not_in_room"
    );
    for c in [&mut ann, &mut cat, &mut eve] {
        let who = c.request(json!({"type":"who","room":"dev"})).await;
        assert!(!lists(&who, "members", "bob", "nick"), "{}: {who}", c.nick);
    }
    // He may come back (the room is public); everyone sees the join.
    joined(&mut bob, "dev").await;
    for c in [&mut ann, &mut cat] {
        until(c, "bob's join", |v| {
            v["type"] == "join" && v["room"] == "dev" && v["nick"] == "bob"
        })
        .await;
    }
    for c in [&mut ann, &mut cat, &mut eve, &mut bob] {
        c.sync().await;
        let extra: Vec<Value> = c
            .drain_pending()
            .into_iter()
            .filter(|v| v["type"] == "leave")
            .collect();
        assert!(extra.is_empty(), "{}: a second leave {extra:?}", c.nick);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_made_on_two_nodes_at_once_ends_with_one_maker_on_both() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(b.addr, "bob").await;
    // Both joins sent before either reply is read: each node may think its user made the room.
    ann.send(json!({"type":"join","room":"race","id":"j"}))
        .await;
    bob.send(json!({"type":"join","room":"race","id":"j"}))
        .await;
    for c in [&mut ann, &mut bob] {
        let ok = c.reply_to(&json!("j")).await;
        assert_eq!(ok["cmd"], "join", "{ok}");
    }
    // A node that lists the other's user has read the other's join, so every change before it,
    // the other's making of the room included: its operators are final (its own making, if
    // later in the stream, changes nothing: the room had a member then).
    let mut ops = Vec::new();
    for (c, other) in [(&mut ann, "bob"), (&mut bob, "ann")] {
        let who = poll(
            c,
            json!({"type":"who","room":"race"}),
            "the other listed",
            |r| lists(r, "members", other, "nick"),
        )
        .await;
        let on: Vec<String> = who["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["op"] == true)
            .map(|m| m["nick"].as_str().unwrap().to_owned())
            .collect();
        ops.push(on);
    }
    assert_eq!(ops[0].len(), 1, "one maker: {ops:?}");
    assert_eq!(ops[0], ops[1], "both nodes agree: {ops:?}");
}

/// One JetStream API request over plain NATS protocol (no client library in the tests): the JSON
/// answer to `payload` on `subject`.
async fn jetstream_request(nats: &Nats, subject: &str, payload: &Value) -> Value {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let address = nats.url.trim_start_matches("nats://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let body = serde_json::to_vec(payload).unwrap();
    let mut out =
        b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.test 1\r\n".to_vec();
    out.extend_from_slice(format!("PUB {subject} _INBOX.test {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\r\n");
    write.write_all(&out).await.unwrap();
    let work = async {
        loop {
            let mut line = String::new();
            assert!(read.read_line(&mut line).await.unwrap() > 0, "NATS closed");
            let Some(rest) = line.strip_prefix("MSG ") else {
                assert!(!line.starts_with("-ERR"), "{line}");
                continue;
            };
            let len: usize = rest.split_whitespace().last().unwrap().parse().unwrap();
            let mut payload = vec![0; len + 2];
            read.read_exact(&mut payload).await.unwrap();
            return serde_json::from_slice::<Value>(&payload[..len]).unwrap();
        }
    };
    tokio::time::timeout(WAIT, work)
        .await
        .expect("a JetStream answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_before_rooms_had_rules_gets_their_subject() {
    let nats = Nats::start();
    // The stream as nodes made it before this change: no rules subject.
    let old = json!({
        "name": "LANCHAT_test",
        "subjects": ["lanchat.test.room.*", "lanchat.test.event.*", "lanchat.test.user"],
        "retention": "limits", "storage": "file", "discard": "old",
        "max_consumers": -1, "max_msgs": -1, "max_bytes": -1, "max_age": 0,
        "max_msgs_per_subject": 100, "num_replicas": 1
    });
    let made = jetstream_request(&nats, "$JS.API.STREAM.CREATE.LANCHAT_test", &old).await;
    assert!(made.get("error").is_none(), "{made}");
    let (a, b) = (node(&nats), node(&nats));
    let info = jetstream_request(&nats, "$JS.API.STREAM.INFO.LANCHAT_test", &json!({})).await;
    let subjects = &info["config"]["subjects"];
    assert!(
        subjects
            .as_array()
            .unwrap()
            .contains(&json!("lanchat.test.rules.*")),
        "{info}"
    );
    assert_eq!(info["config"]["max_msgs_per_subject"], 100, "{info}");
    // And the rules travel: a key set on a is asked on b.
    let (mut ann, _) = TestClient::hello(a.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(b.addr, "bob").await;
    joined(&mut ann, "vault").await;
    listed_with(&mut bob, "vault", 1).await;
    ann.request(json!({"type":"mode","room":"vault","key":"k"}))
        .await;
    poll(&mut bob, json!({"type":"rooms"}), "vault unlisted", |r| {
        !lists(r, "rooms", "vault", "name")
    })
    .await;
    assert_eq!(
        refused(&mut bob, json!({"type":"join","room":"vault"})).await,
        "bad_key"
    );
}
