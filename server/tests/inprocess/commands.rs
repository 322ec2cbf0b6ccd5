//! Commands whose whole handling is in dispatch (no chat rule of their own: `ping`, `quit`,
//! `hello` and its refusals) and every refusal made before the chat state is touched, through a
//! real session over an in-memory pipe.

use lanchat_server::Config;
use serde_json::{json, Value};

use crate::support::Server;

#[tokio::test]
async fn quit_says_bye_with_its_id_and_tells_the_room_a_clean_reason() {
    let mut server = Server::new(Config::default());
    let mut ann = server.registered("ann").await;
    let mut bob = server.registered("bob").await;
    ann.expect("join").await;
    // A reason made only of control characters is no reason: the others see the default.
    bob.send(json!({"type":"quit","id":"q","reason":"\u{1}\u{7}"}))
        .await;
    let frames = bob.read_to_close().await;
    assert_eq!(
        frames,
        [json!({"type":"bye","re":"q","reason":"quit","message":"goodbye"})]
    );
    assert_eq!(
        ann.expect("quit").await,
        json!({"type":"quit","nick":"bob","reason":"quit"})
    );
}

#[tokio::test]
async fn ping_is_answered_with_its_id() {
    let mut server = Server::new(Config::default());
    let mut ann = server.registered("ann").await;
    ann.send(json!({"type":"ping","id":41})).await;
    assert_eq!(ann.recv().await, json!({"type":"ok","re":41,"cmd":"ping"}));
}

/// The `error` frame answering `request` (sent as the next line), with its `re` checked.
async fn refusal(wire: &mut crate::support::Wire, request: Value) -> String {
    wire.send(request.clone()).await;
    let reply = wire.recv().await;
    assert_eq!(reply["type"], "error", "{request} -> {reply}");
    assert_eq!(reply["re"], request["id"], "{reply}");
    reply["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_refusal_made_before_the_state_is_touched() {
    let mut server = Server::new(Config::default());
    let mut anon = server.connect();
    let code = refusal(&mut anon, json!({"type":"join","id":1,"room":"x"})).await;
    assert_eq!(code, "not_registered");
    let code = refusal(&mut anon, json!({"type":"hello","id":2,"nick":"no spaces"})).await;
    assert_eq!(code, "nick_invalid");

    let mut ann = server.registered("ann").await;
    let long = "x".repeat(Config::default().limits.max_text + 1);
    for (request, expected) in [
        (
            json!({"type":"hello","id":3,"nick":"again"}),
            "already_registered",
        ),
        (
            json!({"type":"join","id":4,"room":"#bad room"}),
            "room_invalid",
        ),
        (json!({"type":"nick","id":5,"nick":""}), "nick_invalid"),
        (
            json!({"type":"say","id":6,"room":"lobby","text":""}),
            "text_invalid",
        ),
        (
            json!({"type":"say","id":7,"room":"lobby","text":"bell\u{7}"}),
            "text_invalid",
        ),
        (
            json!({"type":"say","id":8,"room":"lobby","text":long}),
            "text_too_long",
        ),
        (
            json!({"type":"dm","id":9,"to":"ann","text":""}),
            "text_invalid",
        ),
        (
            json!({"type":"status","id":10,"status":"away","text":"x".repeat(101)}),
            "text_too_long",
        ),
        (
            json!({"type":"topic","id":11,"room":"lobby","topic":"x".repeat(301)}),
            "text_too_long",
        ),
        (
            json!({"type":"history","id":12,"room":"lobby","before":"not-a-uuid"}),
            "bad_frame",
        ),
    ] {
        assert_eq!(
            refusal(&mut ann, request.clone()).await,
            expected,
            "{request}"
        );
    }
    // None of them changed anything: the session is still there and alone in the lobby.
    ann.send(json!({"type":"who","id":"w","room":"lobby"}))
        .await;
    let who = ann.recv().await;
    assert_eq!(who["members"], json!([{"nick":"ann","status":"online"}]));
}

#[tokio::test]
async fn a_wrong_protocol_or_password_ends_the_session() {
    let mut server = Server::new(Config {
        password: Some("hunter2".into()),
        ..Config::default()
    });
    for (hello, code) in [
        (
            json!({"type":"hello","id":1,"nick":"a","protocol":2}),
            "protocol_unsupported",
        ),
        (
            json!({"type":"hello","id":1,"nick":"a","password":"guess"}),
            "auth_failed",
        ),
        (json!({"type":"hello","id":1,"nick":"a"}), "auth_failed"),
    ] {
        let mut c = server.connect();
        c.send(hello.clone()).await;
        let frames = c.read_to_close().await;
        assert_eq!(frames.len(), 2, "{hello}: {frames:?}");
        assert_eq!(
            (frames[0]["code"].as_str(), frames[0]["re"].as_i64()),
            (Some(code), Some(1))
        );
        assert_eq!(frames[1]["type"], "bye");
        assert_eq!(frames[1]["reason"], code);
    }
    let mut ok = server.connect();
    ok.send(json!({"type":"hello","nick":"a","password":"hunter2"}))
        .await;
    assert_eq!(ok.recv().await["type"], "welcome");
}

/// Five wrong passwords within a minute and the source is refused every hello, the right
/// password included, until the minute has passed.
#[tokio::test(start_paused = true)]
async fn password_guessing_is_throttled() {
    let mut server = Server::new(Config {
        password: Some("hunter2".into()),
        ..Config::default()
    });
    let mut attempt = |password: &'static str| {
        let mut c = server.connect();
        async move {
            c.send(json!({"type":"hello","nick":"a","password":password}))
                .await;
            c.read_to_close().await
        }
    };
    for guess in ["1", "2", "3", "4", "5"] {
        let frames = attempt(guess).await;
        assert_eq!(frames[0]["message"], "wrong or missing password");
    }
    let frames = attempt("hunter2").await;
    assert_eq!(frames[0]["code"], "auth_failed");
    let message = frames[0]["message"].as_str().unwrap();
    assert!(message.starts_with("too many wrong passwords"), "{message}");
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
    let mut ok = server.connect();
    ok.hello_with(json!({"type":"hello","nick":"a","password":"hunter2"}))
        .await;
}
