//! Private rooms (issue 15) over real sockets: a private room is invisible and unreadable to
//! non-members and works for members; with `--data-dir` its modes survive the idle-room reload
//! and a restart.

use std::time::{Duration, Instant};

use lanchat_tests::{ServerProcess, TempDir, TestClient};
use serde_json::{json, Value};

/// The room names of a `rooms` reply.
async fn listed(c: &mut TestClient) -> Vec<String> {
    let r = c.request(json!({"type":"rooms"})).await;
    r["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

/// What `c` is told by `who`, `topic` and `history` about `room`, ids left out: for a private
/// room and a non-member it must equal what it is told about a room that does not exist.
async fn readings(c: &mut TestClient, room: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for ty in ["who", "topic", "history"] {
        let mut r = c.request(json!({"type":ty,"room":room})).await;
        r.as_object_mut().unwrap().remove("re");
        out.push(r);
    }
    out
}

#[tokio::test]
async fn a_private_room_is_invisible_and_unreadable_to_non_members_and_works_for_members() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let (mut cy, _) = TestClient::hello(server.addr, "cy").await;
    // The lobby's joins, out of the way.
    for nick in ["bob", "cy"] {
        assert_eq!(ann.expect_event("join").await["nick"], nick);
    }
    assert_eq!(bob.expect_event("join").await["nick"], "cy");

    let ok = ann.request(json!({"type":"join","room":"Hideout"})).await;
    assert_eq!(
        ok["members"],
        json!([{"nick":"ann","status":"online","op":true}])
    );
    let ok = ann
        .request(json!({"type":"mode","room":"hideout","invite_only":true,"topic_lock":true}))
        .await;
    assert_eq!(
        ok,
        json!({"type":"ok","re":ok["re"],"cmd":"mode","room":"Hideout",
               "invite_only":true,"has_key":false,"topic_lock":true})
    );
    ann.request(json!({"type":"topic","room":"hideout","topic":"the plan"}))
        .await;
    ann.request(json!({"type":"say","room":"hideout","text":"meet at noon"}))
        .await;

    // A non-member: not listed, and every reading is that of a room that does not exist.
    assert_eq!(listed(&mut cy).await, ["lobby"]);
    let nowhere: Vec<Value> = readings(&mut cy, "Nowhere").await;
    let hidden: Vec<Value> = readings(&mut cy, "Hideout").await;
    let renamed: Vec<Value> = nowhere
        .into_iter()
        .map(|mut v| {
            v["room"] = json!("Hideout");
            v
        })
        .collect();
    assert_eq!(hidden, renamed, "a private room reads as no room at all");
    assert_eq!(hidden[0]["members"], json!([]));
    assert_eq!(hidden[1]["topic"], "");
    assert_eq!(hidden[2]["messages"], json!([]));
    let e = cy.request(json!({"type":"join","room":"hideout"})).await;
    assert_eq!(e["code"], "not_invited", "{e}");

    // An invitation admits bob once; then he reads everything, as a member.
    let ok = ann
        .request(json!({"type":"invite","room":"hideout","nick":"bob"}))
        .await;
    assert_eq!(ok["cmd"], "invite");
    assert_eq!(
        bob.expect_event("invite").await,
        json!({"type":"invite","room":"Hideout","by":"ann"})
    );
    let ok = bob.request(json!({"type":"join","room":"hideout"})).await;
    assert_eq!(ok["cmd"], "join", "{ok}");
    assert_eq!(ok["topic"], "the plan");
    assert_eq!(
        ok["members"],
        json!([{"nick":"ann","status":"online","op":true},{"nick":"bob","status":"online"}])
    );
    ann.expect_event("join").await;
    let h = bob
        .request(json!({"type":"history","room":"hideout"}))
        .await;
    assert_eq!(h["messages"][0]["text"], "meet at noon");
    assert_eq!(listed(&mut bob).await, ["Hideout", "lobby"]);
    bob.request(json!({"type":"say","room":"hideout","text":"see you"}))
        .await;
    assert_eq!(ann.expect_event("message").await["text"], "see you");
    let e = bob
        .request(json!({"type":"topic","room":"hideout","topic":"mine"}))
        .await;
    assert_eq!(e["code"], "not_operator");
    let e = bob
        .request(json!({"type":"mode","room":"hideout","invite_only":false}))
        .await;
    assert_eq!(e["code"], "not_operator");

    // A key: told as `has_key`, never echoed.
    ann.request(json!({"type":"mode","room":"hideout","invite_only":false,"key":"s3cret"}))
        .await;
    let ev = bob.expect_event("mode").await;
    assert_eq!(
        ev,
        json!({"type":"mode","room":"Hideout","by":"ann","invite_only":false,"has_key":true,"topic_lock":true})
    );
    assert_eq!(listed(&mut cy).await, ["lobby"], "keyed is private too");
    let e = cy
        .request(json!({"type":"join","room":"hideout","key":"guess"}))
        .await;
    assert_eq!(e["code"], "bad_key");

    // A kick: one `leave` naming the operator, to the kicked member too.
    ann.request(json!({"type":"kick","room":"hideout","nick":"bob","reason":"bye"}))
        .await;
    assert_eq!(
        bob.expect_event("leave").await,
        json!({"type":"leave","room":"Hideout","nick":"bob","kicked_by":"ann","reason":"bye"})
    );
    let e = bob
        .request(json!({"type":"say","room":"hideout","text":"?"}))
        .await;
    assert_eq!(e["code"], "not_in_room");
    let ok = cy
        .request(json!({"type":"join","room":"hideout","key":"s3cret"}))
        .await;
    assert_eq!(ok["cmd"], "join", "the right key admits: {ok}");
    assert_eq!(ann.expect_event("join").await["nick"], "cy");
    ann.assert_quiet().await;
    assert!(
        !server.stderr_text().contains("s3cret"),
        "a key is never logged"
    );
}

fn start(dir: &TempDir, extra: &[&str]) -> ServerProcess {
    let path = dir.path().to_str().unwrap();
    let mut args = vec!["--data-dir", path, "--rate-per-sec", "0"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

/// Poll (bounded) until `done`: the server's disk writes are its own timer's.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_a_data_dir_modes_survive_the_idle_reload_and_a_restart() {
    let dir = TempDir::new("private");
    let mut server = start(&dir, &["--room-idle", "1"]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    ann.request(json!({"type":"join","room":"Vault"})).await;
    ann.request(json!({"type":"mode","room":"vault","invite_only":true,"key":"k3y"}))
        .await;
    // A public room with messages only: its maker must still be its operator after the reload.
    ann.request(json!({"type":"join","room":"Plain"})).await;
    ann.request(json!({"type":"say","room":"plain","text":"hello"}))
        .await;
    let topics = dir.path().join("topics.json");
    eventually("modes and operators saved", || {
        std::fs::read_to_string(&topics)
            .is_ok_and(|t| t.contains("invite_only") && t.contains("\"plain\""))
    })
    .await;
    // Vault is left first, so it is forgotten no later than Plain (idle rooms go oldest first),
    // and a forgotten public room answers `who` in the spelling asked, not its own.
    ann.request(json!({"type":"leave","room":"vault"})).await;
    ann.request(json!({"type":"leave","room":"plain"})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ann.request(json!({"type":"who","room":"PLAIN"})).await["room"] != "PLAIN" {
        assert!(
            Instant::now() < deadline,
            "the idle rooms were never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = ann.request(json!({"type":"join","room":"plain"})).await;
    assert_eq!(ok["room"], "Plain", "brought back from disk: {ok}");
    assert_eq!(ok["members"][0]["op"], true, "{ok}");

    // Brought back from disk by a join: still invite-only, and ann still its operator.
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let e = bob
        .request(json!({"type":"join","room":"vault","key":"k3y"}))
        .await;
    assert_eq!(e["code"], "not_invited", "{e}");
    assert_eq!(
        listed(&mut bob).await,
        ["lobby", "Plain"],
        "Vault is not listed"
    );
    let ok = ann.request(json!({"type":"join","room":"vault"})).await;
    assert_eq!(ok["members"][0]["op"], true, "{ok}");
    assert!(
        !server.stderr_text().contains("k3y"),
        "a key is never logged"
    );
    drop((ann, bob));
    server.stop();

    let server = start(&dir, &[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let e = bob.request(json!({"type":"join","room":"vault"})).await;
    assert_eq!(e["code"], "not_invited", "{e}");
    let h = bob.request(json!({"type":"topic","room":"vault"})).await;
    assert_eq!(h["room"], "vault", "read as no room at all");
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let ok = ann.request(json!({"type":"mode","room":"vault"})).await;
    assert_eq!(ok["code"], "not_in_room", "ann is not in it yet");
    ann.request(json!({"type":"join","room":"vault"})).await;
    let ok = ann.request(json!({"type":"mode","room":"vault"})).await;
    assert_eq!(
        (&ok["invite_only"], &ok["has_key"], &ok["topic_lock"]),
        (&json!(true), &json!(true), &json!(false))
    );
}
