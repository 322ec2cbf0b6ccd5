//! Every error code, with and without request ids, and the connection going on after each.

use lanchat_tests::{ServerProcess, TestClient};
use serde_json::json;

#[tokio::test]
async fn framing_errors_keep_the_connection() {
    let server = ServerProcess::start(&["--max-line", "1024"]);
    let mut c = TestClient::connect(server.addr).await;
    c.send_raw(b"not json\n").await;
    let e = c.recv().await;
    assert_eq!(e["code"], "bad_json");
    assert!(e.get("re").is_none());
    c.send_raw(b"[1,2]\n\"str\"\n{\"type\":\"\xff\"}\n").await;
    for _ in 0..3 {
        assert_eq!(c.recv().await["code"], "bad_json");
    }
    c.send_raw(b"{\"id\":5}\n{\"id\":6,\"type\":7}\n").await;
    for re in [5, 6] {
        let e = c.recv().await;
        assert_eq!(
            (e["code"].as_str(), &e["re"]),
            (Some("bad_frame"), &json!(re))
        );
        assert!(e["message"].as_str().unwrap().contains("`type`"), "{e}");
    }
    c.send_raw(b"{\"id\":1.5,\"type\":\"ping\"}\n").await;
    let e = c.recv().await;
    assert_eq!(e["code"], "bad_frame");
    assert!(e.get("re").is_none());
    let long_id = "x".repeat(65);
    c.send(json!({"id": long_id, "type":"ping"})).await;
    assert_eq!(c.recv().await["code"], "bad_frame");
    c.send(json!({"id":"u","type":"frobnicate"})).await;
    assert_eq!(
        c.recv().await,
        json!({"type":"error","code":"unknown_type","message":"unknown frame type \"frobnicate\"","re":"u"})
    );

    // An overlong line, sent in pieces, then a good line on the same connection.
    let mut long = vec![b'a'; 3000];
    c.send_raw(&long[..1500]).await;
    let e = c.recv().await;
    assert_eq!(e["code"], "line_too_long");
    long.push(b'\n');
    c.send_raw(&long[1500..]).await;
    let w = c.request(json!({"type":"hello","nick":"survivor"})).await;
    assert_eq!(w["type"], "welcome");
}

#[tokio::test]
async fn registration_errors() {
    let server = ServerProcess::start(&[]);
    let mut c = TestClient::connect(server.addr).await;
    for frame in [json!({"type":"join","room":"x"}), json!({"type":"ping"})] {
        let e = c.request(frame).await;
        assert_eq!(e["code"], "not_registered");
    }
    for bad in ["", "has space", "a/b", "😀", &"n".repeat(33)] {
        let e = c.request(json!({"type":"hello","nick":bad})).await;
        assert_eq!(e["code"], "nick_invalid", "{bad:?}");
    }
    let (_ann, _) = TestClient::hello(server.addr, "Ann").await;
    let e = c.request(json!({"type":"hello","nick":"ANN"})).await;
    assert_eq!(e["code"], "nick_taken");
    let w = c.request(json!({"type":"hello","nick":"Ünïcødé.2"})).await;
    assert_eq!(w["nick"], "Ünïcødé.2");
    let e = c.request(json!({"type":"hello","nick":"again"})).await;
    assert_eq!(e["code"], "already_registered");
}

#[tokio::test]
async fn protocol_unsupported_says_bye() {
    let server = ServerProcess::start(&[]);
    let mut c = TestClient::connect(server.addr).await;
    c.send(json!({"type":"hello","nick":"x","protocol":2,"id":1}))
        .await;
    let frames = c.read_to_close().await;
    assert_eq!(frames[0]["code"], "protocol_unsupported");
    assert_eq!(frames[0]["re"], 1);
    assert_eq!(frames[1]["type"], "bye");
    assert_eq!(frames[1]["reason"], "protocol_unsupported");
    assert_eq!(frames.len(), 2);
}

#[tokio::test]
async fn command_errors() {
    let server = ServerProcess::start(&["--max-text", "100", "--max-line", "1024"]);
    let (mut c, _) = TestClient::hello(server.addr, "ann").await;
    let cases = [
        (json!({"type":"join","room":"bad room"}), "room_invalid"),
        (json!({"type":"join","room":""}), "room_invalid"),
        (
            json!({"type":"say","room":"elsewhere","text":"x"}),
            "not_in_room",
        ),
        (json!({"type":"leave","room":"elsewhere"}), "not_in_room"),
        (
            json!({"type":"dm","to":"nobody","text":"x"}),
            "no_such_nick",
        ),
        (
            json!({"type":"say","room":"lobby","text":""}),
            "text_invalid",
        ),
        (
            json!({"type":"say","room":"lobby","text":"bell\u{7}"}),
            "text_invalid",
        ),
        (
            json!({"type":"say","room":"lobby","text":"x".repeat(101)}),
            "text_too_long",
        ),
        (
            json!({"type":"dm","to":"ann","text":"x".repeat(101)}),
            "text_too_long",
        ),
        (
            json!({"type":"status","status":"away","text":"x".repeat(101)}),
            "text_too_long",
        ),
        (json!({"type":"status","status":"gone"}), "bad_frame"),
        (
            json!({"type":"topic","room":"lobby","topic":"\u{1b}[31m"}),
            "text_invalid",
        ),
        (json!({"type":"nick","nick":"no way"}), "nick_invalid"),
        (
            json!({"type":"history","room":"lobby","limit":0}),
            "bad_frame",
        ),
        (
            json!({"type":"history","room":"lobby","limit":201}),
            "bad_frame",
        ),
        (json!({"type":"say","room":"lobby"}), "bad_frame"),
        (json!({"type":"say","room":"lobby","text":5}), "bad_frame"),
    ];
    for (frame, code) in cases {
        let e = c.request(frame.clone()).await;
        assert_eq!(e["type"], "error", "{frame}");
        assert_eq!(e["code"], code, "{frame} -> {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    // Exactly max_text is fine.
    let ok = c
        .request(json!({"type":"say","room":"lobby","text":"é".repeat(50)}))
        .await;
    assert_eq!(ok["cmd"], "say");
}

#[tokio::test]
async fn too_many_rooms() {
    let server = ServerProcess::start(&[]);
    let (mut c, _) = TestClient::hello(server.addr, "ann").await;
    // lobby is one of the 100.
    for i in 0..99 {
        let ok = c
            .request(json!({"type":"join","room":format!("r{i}")}))
            .await;
        assert_eq!(ok["type"], "ok");
    }
    let e = c.request(json!({"type":"join","room":"one-more"})).await;
    assert_eq!(e["code"], "too_many_rooms");
    // Rejoining one already joined is fine.
    assert_eq!(
        c.request(json!({"type":"join","room":"r5"})).await["type"],
        "ok"
    );
}

#[tokio::test]
async fn too_many_errors_closes() {
    let server = ServerProcess::start(&[]);
    let mut c = TestClient::connect(server.addr).await;
    for _ in 0..25 {
        c.send_raw(b"nope\n").await;
    }
    let frames = c.read_to_close().await;
    let errors = frames.iter().filter(|f| f["code"] == "bad_json").count();
    assert_eq!(errors, 20, "{frames:?}");
    let tail: Vec<_> = frames.iter().rev().take(2).collect();
    assert_eq!(tail[1]["code"], "too_many_errors");
    assert_eq!(tail[0]["type"], "bye");
    assert_eq!(tail[0]["reason"], "too_many_errors");
}

#[tokio::test]
async fn semantic_errors_are_not_counted() {
    let server = ServerProcess::start(&[]);
    let (mut c, _) = TestClient::hello(server.addr, "ann").await;
    for _ in 0..30 {
        let e = c.request(json!({"type":"leave","room":"ghost-town"})).await;
        assert_eq!(e["code"], "not_in_room");
        let e = c.request(json!({"type":"nick","nick":"bad nick"})).await;
        assert_eq!(e["code"], "nick_invalid");
    }
    c.sync().await;
}
