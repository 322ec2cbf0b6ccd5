//! Every command, its reply and the events others see.

use lanchat_tests::{ServerProcess, TestClient};
use serde_json::{json, Value};

fn nicks(members: &Value) -> Vec<String> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["nick"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn hello_welcome_and_default_room() {
    let server = ServerProcess::start(&["--name", "test box", "--motd", "be nice"]);
    let (mut ann, welcome) = TestClient::hello(server.addr, "Ann").await;
    assert_eq!(welcome["re"], 1);
    assert_eq!(welcome["protocol"], 1);
    assert!(welcome["server"].as_str().unwrap().starts_with("lanchat/"));
    assert_eq!(welcome["name"], "test box");
    assert_eq!(welcome["motd"], "be nice");
    assert_eq!(welcome["nick"], "Ann");
    assert_eq!(welcome["rooms"], json!(["lobby"]));
    assert_eq!(welcome["session"].as_str().unwrap().len(), 36);
    assert_eq!(
        welcome["limits"],
        json!({"max_line":16384,"max_text":4096,"rate_burst":10,"rate_per_sec":5,"ping_interval_s":60,
               "event_burst":200,"events_per_sec":2,
               "reply_bytes_burst":8_388_608,"reply_bytes_per_sec":1_048_576,"rooms_page":500})
    );
    let (_bob, _) = TestClient::hello(server.addr, "bob").await;
    let ev = ann.expect_event("join").await;
    assert_eq!(ev, json!({"type":"join","room":"lobby","nick":"bob"}));
    let who = ann.request(json!({"type":"who","room":"LOBBY"})).await;
    assert_eq!(who["room"], "lobby");
    assert_eq!(nicks(&who["members"]), ["Ann", "bob"]);
}

/// `"autojoin":false` (extension): registered in no room, and the default room is not told.
#[tokio::test]
async fn hello_without_autojoin_enters_no_room() {
    let server = ServerProcess::start(&[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let mut bot = TestClient::connect(server.addr).await;
    let welcome = bot
        .request(json!({"type":"hello","nick":"deploybot","autojoin":false}))
        .await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["rooms"], json!([]));
    // Ann was told of nobody's arrival: the next thing she gets is her own who's reply.
    let who = ann.request(json!({"type":"who","room":"lobby"})).await;
    assert_eq!(nicks(&who["members"]), ["ann"]);
    ann.assert_quiet().await;
    let said = bot
        .request(json!({"type":"say","room":"lobby","text":"hi"}))
        .await;
    assert_eq!(said["code"], "not_in_room");
    // Joining later is an ordinary join, which the room hears of.
    let ok = bot.request(json!({"type":"join","room":"lobby"})).await;
    assert_eq!(nicks(&ok["members"]), ["ann", "deploybot"]);
    let ev = ann.expect_event("join").await;
    assert_eq!(ev, json!({"type":"join","room":"lobby","nick":"deploybot"}));
    // `true` is the default's spelling; anything but a boolean is refused.
    let mut eve = TestClient::connect(server.addr).await;
    let welcome = eve
        .request(json!({"type":"hello","nick":"eve","autojoin":true}))
        .await;
    assert_eq!(welcome["rooms"], json!(["lobby"]));
    let mut odd = TestClient::connect(server.addr).await;
    let refused = odd
        .request(json!({"type":"hello","nick":"odd","autojoin":"no"}))
        .await;
    assert_eq!(
        (&refused["type"], &refused["code"]),
        (&json!("error"), &json!("bad_frame"))
    );
}

#[tokio::test]
async fn join_say_leave_and_history() {
    let server = ServerProcess::start(&[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    ann.expect_event("join").await;

    let ok = ann.request(json!({"type":"join","room":"Rust"})).await;
    assert_eq!(ok["type"], "ok");
    assert_eq!(ok["cmd"], "join");
    assert_eq!(ok["room"], "Rust");
    assert_eq!(ok["topic"], "");
    // Ann made the room: its first operator (PROTOCOL.md, "Private rooms").
    assert_eq!(
        ok["members"],
        json!([{"nick":"ann","status":"online","op":true}])
    );

    let ok = bob.request(json!({"type":"join","room":"rust"})).await;
    assert_eq!(ok["room"], "Rust", "first spelling wins");
    assert_eq!(nicks(&ok["members"]), ["ann", "bob"]);
    assert_eq!(
        ann.expect_event("join").await,
        json!({"type":"join","room":"Rust","nick":"bob"})
    );

    let ok = ann
        .request(json!({"type":"say","room":"rust","text":"hello\tworld\nline 2"}))
        .await;
    assert_eq!(ok["cmd"], "say");
    let id = ok["id"].as_str().unwrap().to_owned();
    assert_eq!(&id[14..15], "7", "UUIDv7: {id}");
    let ts = ok["ts"].as_u64().unwrap();
    let msg = bob.expect_event("message").await;
    assert_eq!(
        msg,
        json!({"type":"message","id":id,"ts":ts,"room":"Rust","from":"ann","text":"hello\tworld\nline 2"})
    );
    ann.assert_quiet().await; // no echo to the sender

    let hist = bob.request(json!({"type":"history","room":"Rust"})).await;
    assert_eq!(hist["cmd"], "history");
    assert_eq!(hist["messages"], json!([msg]));

    let ok = bob.request(json!({"type":"leave","room":"Rust"})).await;
    assert_eq!(
        ok,
        json!({"type":"ok","cmd":"leave","re":ok["re"],"room":"Rust"})
    );
    assert_eq!(
        ann.expect_event("leave").await,
        json!({"type":"leave","room":"Rust","nick":"bob"})
    );
    // History outlives membership.
    let hist = bob.request(json!({"type":"history","room":"rust"})).await;
    assert_eq!(hist["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn history_before_after_and_limit() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let ok = ann
            .request(json!({"type":"say","room":"lobby","text":format!("m{i}")}))
            .await;
        ids.push(ok["id"].as_str().unwrap().to_owned());
    }
    let texts = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let h = ann
        .request(json!({"type":"history","room":"lobby","limit":3}))
        .await;
    assert_eq!(texts(&h), ["m7", "m8", "m9"]);
    let h = ann
        .request(json!({"type":"history","room":"lobby","before":ids[5],"limit":2}))
        .await;
    assert_eq!(texts(&h), ["m3", "m4"]);
    let h = ann
        .request(json!({"type":"history","room":"lobby","after":ids[5],"limit":2}))
        .await;
    assert_eq!(texts(&h), ["m6", "m7"]);
    let h = ann
        .request(json!({"type":"history","room":"lobby","after":ids[2],"before":ids[6]}))
        .await;
    assert_eq!(texts(&h), ["m3", "m4", "m5"]);
    let h = ann
        .request(json!({"type":"history","room":"nowhere"}))
        .await;
    assert_eq!(h["messages"], json!([]));
    let e = ann
        .request(json!({"type":"history","room":"lobby","before":"not-an-id"}))
        .await;
    assert_eq!(e["code"], "bad_frame");
}

#[tokio::test]
async fn history_is_bounded_by_the_history_flag() {
    let server = ServerProcess::start(&["--rate-per-sec", "0", "--history", "5"]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    for i in 0..8 {
        ann.request(json!({"type":"say","room":"lobby","text":format!("m{i}")}))
            .await;
    }
    let h = ann
        .request(json!({"type":"history","room":"lobby","limit":200}))
        .await;
    let texts: Vec<_> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, ["m3", "m4", "m5", "m6", "m7"]);
}

#[tokio::test]
async fn dm_nick_status_topic_rooms() {
    let server = ServerProcess::start(&[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let (mut cat, _) = TestClient::hello(server.addr, "cat").await;
    ann.expect_event("join").await;
    ann.expect_event("join").await;
    bob.expect_event("join").await;
    // bob and ann also share a second room: events must still come once.
    ann.request(json!({"type":"join","room":"two"})).await;
    bob.request(json!({"type":"join","room":"two"})).await;
    ann.expect_event("join").await;

    let ok = ann
        .request(json!({"type":"dm","to":"BOB","text":"psst"}))
        .await;
    assert_eq!(ok["cmd"], "dm");
    assert_eq!(ok["to"], "bob");
    let d = bob.expect_event("direct").await;
    assert_eq!(
        d,
        json!({"type":"direct","id":ok["id"],"ts":ok["ts"],"from":"ann","to":"bob","text":"psst"})
    );
    cat.assert_quiet().await;

    let ok = ann.request(json!({"type":"nick","nick":"anne"})).await;
    assert_eq!(ok["nick"], "anne");
    assert_eq!(
        bob.expect_event("nick").await,
        json!({"type":"nick","old":"ann","new":"anne"})
    );
    assert_eq!(
        cat.expect_event("nick").await,
        json!({"type":"nick","old":"ann","new":"anne"})
    );
    bob.assert_quiet().await;
    // The old nick is free again, the new one taken.
    let e = cat.request(json!({"type":"nick","nick":"ANNE"})).await;
    assert_eq!(e["code"], "nick_taken");

    let ok = ann
        .request(json!({"type":"status","status":"away","text":"lunch"}))
        .await;
    assert_eq!(
        ok,
        json!({"type":"ok","cmd":"status","re":ok["re"],"status":"away","text":"lunch"})
    );
    assert_eq!(
        bob.expect_event("presence").await,
        json!({"type":"presence","nick":"anne","status":"away","text":"lunch"})
    );
    bob.assert_quiet().await;
    cat.expect_event("presence").await;
    let who = cat.request(json!({"type":"who","room":"lobby"})).await;
    assert_eq!(
        who["members"][0],
        json!({"nick":"anne","status":"away","text":"lunch"})
    );
    ann.request(json!({"type":"status","status":"online"}))
        .await;
    assert_eq!(
        bob.expect_event("presence").await,
        json!({"type":"presence","nick":"anne","status":"online"})
    );

    let ok = bob
        .request(json!({"type":"topic","room":"two","topic":"all about two"}))
        .await;
    assert_eq!(ok["topic"], "all about two");
    assert_eq!(
        ann.expect_event("topic").await,
        json!({"type":"topic","room":"two","topic":"all about two","by":"bob"})
    );
    let ok = cat.request(json!({"type":"topic","room":"two"})).await;
    assert_eq!(ok["topic"], "all about two", "reading needs no membership");
    let e = cat
        .request(json!({"type":"topic","room":"two","topic":"mine"}))
        .await;
    assert_eq!(e["code"], "not_in_room");

    let rooms = cat.request(json!({"type":"rooms"})).await;
    assert_eq!(
        rooms["rooms"],
        json!([
            {"name":"lobby","members":3,"topic":""},
            {"name":"two","members":2,"topic":"all about two"}
        ])
    );
}

#[tokio::test]
async fn requests_without_id_get_replies_without_re_in_order() {
    let server = ServerProcess::start(&[]);
    let mut c = TestClient::connect(server.addr).await;
    c.send_raw(b"{\"type\":\"hello\",\"nick\":\"ann\"}\n{\"type\":\"ping\"}\n{\"type\":\"pong\"}\r\n\n{\"type\":\"join\",\"room\":\"x\"}\n{\"type\":\"nope\"}\n{\"type\":\"ping\",\"id\":\"last\"}\n").await;
    let w = c.recv().await;
    assert_eq!(w["type"], "welcome");
    assert!(w.get("re").is_none());
    assert_eq!(c.recv().await, json!({"type":"ok","cmd":"ping"}));
    let j = c.recv().await;
    assert_eq!((j["cmd"].as_str(), j.get("re")), (Some("join"), None));
    let e = c.recv().await;
    assert_eq!(e["code"], "unknown_type");
    assert!(e.get("re").is_none());
    assert_eq!(
        c.recv().await,
        json!({"type":"ok","cmd":"ping","re":"last"})
    );
}

#[tokio::test]
async fn quit_says_bye_and_tells_others_once() {
    let server = ServerProcess::start(&[]);
    let (mut ann, _) = TestClient::hello(server.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    ann.expect_event("join").await;
    ann.request(json!({"type":"join","room":"r2"})).await;
    bob.request(json!({"type":"join","room":"r2"})).await;
    ann.expect_event("join").await;
    bob.send(json!({"type":"quit","reason":"off to lunch","id":9}))
        .await;
    let rest = bob.read_to_close().await;
    assert_eq!(
        rest,
        vec![json!({"type":"bye","re":9,"reason":"quit","message":"goodbye"})]
    );
    assert_eq!(
        ann.expect_event("quit").await,
        json!({"type":"quit","nick":"bob","reason":"off to lunch"})
    );
    ann.assert_quiet().await;

    // A dropped connection is reported as lost; the nick becomes free.
    let (cat, _) = TestClient::hello(server.addr, "cat").await;
    ann.expect_event("join").await;
    drop(cat);
    assert_eq!(
        ann.expect_event("quit").await,
        json!({"type":"quit","nick":"cat","reason":"connection lost"})
    );
    let (_cat2, _) = TestClient::hello(server.addr, "cat").await;
}

#[tokio::test]
async fn unix_socket_session() {
    let dir = std::env::temp_dir().join(format!("lanchat-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chat.sock");
    // A stale socket file from a crashed server is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut server = ServerProcess::start(&["--unix", path.to_str().unwrap()]);
    let unix = server.next_listening();
    assert_eq!(unix, format!("unix:{}", path.display()));

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(r).lines();
    let (mut tcp, _) = TestClient::hello(server.addr, "tcp").await;
    w.write_all(b"{\"type\":\"hello\",\"nick\":\"local\",\"id\":1}\n{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"from unix\",\"id\":2}\n")
        .await
        .unwrap();
    let next = |l: Option<String>| -> Value { serde_json::from_str(&l.unwrap()).unwrap() };
    let read = async {
        let w = next(lines.next_line().await.unwrap());
        let ok = next(lines.next_line().await.unwrap());
        (w, ok)
    };
    let (w1, ok) = tokio::time::timeout(lanchat_tests::WAIT, read)
        .await
        .unwrap();
    assert_eq!(w1["type"], "welcome");
    assert_eq!(ok["cmd"], "say");
    tcp.expect_event("join").await;
    assert_eq!(tcp.expect_event("message").await["text"], "from unix");

    server.stop();
    assert!(!path.exists(), "socket file removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rooms` is paged: 300 rooms with members, listed 128 at a time by following `next`, come
/// back in order, each once, with nothing beyond the last page; a default-sized page holds all.
#[tokio::test]
async fn a_long_room_list_is_read_page_by_page() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    // A session may be in 100 rooms (the lobby one of them): four users hold 75 each.
    let mut names = Vec::new();
    let mut users = Vec::new();
    for u in 0..4 {
        let (mut c, _) = TestClient::hello(server.addr, &format!("user{u}")).await;
        for r in 0..75 {
            let room = format!("Room-{u}-{r:03}");
            let ok = c.request(json!({"type":"join","room":room})).await;
            assert_eq!(ok["type"], "ok", "{ok}");
            names.push(room);
        }
        users.push(c);
    }
    names.push("lobby".into());
    names.sort_by_key(|n| n.to_lowercase());

    let (mut reader, _) = TestClient::hello(server.addr, "reader").await;
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request = json!({"type":"rooms","limit":128});
        if let Some(a) = &after {
            request["after"] = json!(a);
        }
        let page = reader.request(request).await;
        assert_eq!(page["cmd"], "rooms", "{page}");
        let rooms = page["rooms"].as_array().unwrap();
        assert!(rooms.len() <= 128);
        listed.extend(rooms.iter().map(|r| r["name"].as_str().unwrap().to_owned()));
        pages += 1;
        match page.get("next") {
            Some(next) => {
                assert_eq!(
                    next,
                    &rooms.last().unwrap()["name"],
                    "next is the last listed"
                );
                after = Some(next.as_str().unwrap().to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3, "301 rooms in pages of 128");
    assert_eq!(listed, names);

    let all = reader.request(json!({"type":"rooms"})).await;
    assert_eq!(all["rooms"].as_array().unwrap().len(), 301);
    assert!(all.get("next").is_none(), "{}", all["next"]);
    let bad = reader.request(json!({"type":"rooms","limit":501})).await;
    assert_eq!(bad["code"], "bad_frame");
}
