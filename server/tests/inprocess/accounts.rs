//! Registered nicks (issue 15): `register`, `unregister`, and the secret a registered nick needs
//! in `hello` and `nick`, through real sessions over in-memory pipes. Hashes are real Argon2id
//! (on the blocking pool), so these run on the real clock.

use std::net::IpAddr;

use lanchat_server::admission::{Source, MAX_FAILED_PASSWORDS};
use lanchat_server::Config;
use serde_json::{json, Value};

use crate::support::{Server, Wire};

const SECRET: &str = "correct horse battery";

async fn register(wire: &mut Wire, secret: &str) -> Value {
    wire.send(json!({"type":"register","id":"r","secret":secret}))
        .await;
    wire.expect_reply().await
}

/// The reply to a `hello` that must be refused.
async fn refused_hello(wire: &mut Wire, hello: Value) -> Value {
    wire.send(hello).await;
    let reply = wire.recv().await;
    assert_eq!(reply["type"], "error", "{reply}");
    reply
}

#[tokio::test]
async fn a_registered_nick_is_reserved_after_its_owner_quits_and_its_secret_opens_it() {
    let mut server = Server::new(Config::default());
    let mut bob = server.registered("bob").await;
    assert_eq!(
        register(&mut bob, SECRET).await,
        json!({"type":"ok","re":"r","cmd":"register","nick":"bob","persistent":false})
    );
    bob.send(json!({"type":"quit"})).await;
    bob.read_to_close().await;

    let mut other = server.connect();
    let reply = refused_hello(&mut other, json!({"type":"hello","id":1,"nick":"BOB"})).await;
    assert_eq!(reply["code"], "nick_registered");
    assert_eq!(reply["re"], 1);
    // A lookalike is nobody's, with or without the secret.
    let reply = refused_hello(
        &mut other,
        json!({"type":"hello","id":2,"nick":"b0b","secret":SECRET}),
    )
    .await;
    assert_eq!(reply["code"], "nick_taken");
    // The connection goes on: another nick works.
    other.hello_with(json!({"type":"hello","nick":"cyd"})).await;
    // And `nick` needs the secret too.
    other.send(json!({"type":"nick","id":3,"nick":"bob"})).await;
    assert_eq!(other.expect_reply().await["code"], "nick_registered");

    let mut back = server.connect();
    let welcome = back
        .hello_with(json!({"type":"hello","nick":"Bob","secret":SECRET}))
        .await;
    assert_eq!(welcome["nick"], "Bob");
}

#[tokio::test]
async fn nick_with_the_secret_takes_a_registered_nick_and_its_owner_may_leave_it() {
    let mut server = Server::new(Config::default());
    let mut ann = server.registered("ann").await;
    assert_eq!(register(&mut ann, SECRET).await["type"], "ok");
    // Leaving one's registered nick is allowed; it stays reserved.
    ann.send(json!({"type":"nick","id":1,"nick":"annie"})).await;
    assert_eq!(ann.expect_reply().await["nick"], "annie");
    let mut bob = server.registered("bob").await;
    bob.send(json!({"type":"nick","id":2,"nick":"ann"})).await;
    assert_eq!(bob.expect_reply().await["code"], "nick_registered");
    bob.send(json!({"type":"nick","id":3,"nick":"ann","secret":"wrong secret!"}))
        .await;
    let reply = bob.expect_reply().await;
    assert_eq!(reply["code"], "nick_registered");
    assert!(reply["message"].as_str().unwrap().contains("wrong secret"));
    // Whoever has the secret may use it.
    ann.send(json!({"type":"nick","id":4,"nick":"ann","secret":SECRET}))
        .await;
    assert_eq!(
        ann.expect_reply().await,
        json!({"type":"ok","re":4,"cmd":"nick","nick":"ann"})
    );
}

#[tokio::test]
async fn unregister_frees_the_nick() {
    let mut server = Server::new(Config::default());
    let mut ann = server.registered("ann").await;
    ann.send(json!({"type":"unregister","id":1})).await;
    let reply = ann.expect_reply().await;
    assert_eq!(reply["code"], "no_such_nick", "not registered yet: {reply}");
    assert_eq!(register(&mut ann, SECRET).await["type"], "ok");
    ann.send(json!({"type":"unregister","id":2})).await;
    assert_eq!(
        ann.expect_reply().await,
        json!({"type":"ok","re":2,"cmd":"unregister","nick":"ann"})
    );
    ann.send(json!({"type":"quit"})).await;
    ann.read_to_close().await;
    server.registered("ann").await;
}

#[tokio::test]
async fn wrong_secrets_are_throttled_per_address_like_passwords() {
    let mut server = Server::new(Config::default());
    let mut ann = server.registered("ann").await;
    assert_eq!(register(&mut ann, SECRET).await["type"], "ok");
    let guesser = Source::Ip(IpAddr::from([127, 0, 0, 9]));
    let mut wire = server.connect_from(guesser);
    for i in 0..MAX_FAILED_PASSWORDS {
        let reply = refused_hello(
            &mut wire,
            json!({"type":"hello","id":i,"nick":"ann","secret":format!("guess number {i}")}),
        )
        .await;
        assert_eq!(reply["code"], "nick_registered");
        assert!(reply.get("retry_after_ms").is_none(), "{reply}");
    }
    // Now even the right secret is not checked, from this address.
    let reply = refused_hello(
        &mut wire,
        json!({"type":"hello","id":9,"nick":"ann","secret":SECRET}),
    )
    .await;
    assert_eq!(reply["code"], "nick_registered");
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("too many wrong secrets"));
    assert!(reply["retry_after_ms"].as_u64().unwrap() > 0);
    // Another address is not affected.
    let mut elsewhere = server.connect_from(Source::Ip(IpAddr::from([127, 0, 0, 10])));
    elsewhere
        .hello_with(json!({"type":"hello","nick":"ann","secret":SECRET}))
        .await;
}

#[tokio::test]
async fn the_secret_takes_a_live_nick_over_and_the_old_session_is_told_replaced() {
    let mut server = Server::new(Config::default());
    let mut old = server.registered("ann").await;
    assert_eq!(register(&mut old, SECRET).await["type"], "ok");
    let mut bob = server.registered("bob").await;
    old.expect("join").await;

    let mut new = server.connect();
    let welcome = new
        .hello_with(json!({"type":"hello","id":1,"nick":"ann","secret":SECRET}))
        .await;
    assert_eq!(welcome["re"], 1);
    let frames = old.read_to_close().await;
    assert_eq!(
        frames.last().unwrap(),
        &json!({"type":"bye","reason":"replaced","message":"another connection said hello with this nick's secret"})
    );
    assert_eq!(
        bob.expect("quit").await,
        json!({"type":"quit","nick":"ann","reason":"replaced"})
    );
    assert_eq!(
        bob.expect("join").await,
        json!({"type":"join","room":"lobby","nick":"ann"})
    );
}

#[tokio::test]
async fn the_account_cap_refuses_new_registrations() {
    let mut server = Server::new(Config {
        max_accounts: 1,
        ..Config::default()
    });
    let mut ann = server.registered("ann").await;
    assert_eq!(register(&mut ann, SECRET).await["type"], "ok");
    // Replacing one's own secret is not a new account.
    assert_eq!(register(&mut ann, "another secret").await["type"], "ok");
    let mut bob = server.registered("bob").await;
    assert_eq!(
        register(&mut bob, SECRET).await["code"],
        "too_many_accounts"
    );
}

#[tokio::test]
async fn malformed_secrets_are_bad_frames() {
    let mut server = Server::new(Config::default());
    let mut ann = server.registered("ann").await;
    ann.send(json!({"type":"register","id":1,"secret":"short"}))
        .await;
    let reply = ann.expect_reply().await;
    assert_eq!(reply["code"], "bad_frame");
    assert_eq!(reply["re"], 1);
}

#[tokio::test]
async fn register_costs_ten_tokens_of_the_events_budget() {
    let mut config = Config::default();
    config.limits.event_burst = Some(25);
    let mut server = Server::new(config);
    // The hello took one token; each register ten, allowed while a token is left (the last
    // one into debt, as any request charged more than one): 24, 14, 4, then refused.
    let mut ann = server.registered("ann").await;
    for _ in 0..3 {
        assert_eq!(register(&mut ann, SECRET).await["type"], "ok");
    }
    let reply = register(&mut ann, SECRET).await;
    assert_eq!(reply["code"], "rate_limited", "{reply}");
    assert!(reply["retry_after_ms"].as_u64().unwrap() > 0);
}
