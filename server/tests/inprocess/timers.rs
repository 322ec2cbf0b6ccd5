//! Every timer of a session on a paused clock: the runtime jumps to the next deadline as soon as
//! everything is idle, so a minute of protocol time takes microseconds, and the tests can say
//! exactly when (in that time) each thing happened.

use std::time::Duration;

use lanchat_server::admission::Source;
use lanchat_server::Config;
use serde_json::json;
use tokio::time::Instant;

use crate::support::Server;

fn config() -> Config {
    Config::default()
}

#[tokio::test(start_paused = true)]
async fn no_hello_within_the_timeout_is_a_bye() {
    let mut server = Server::new(Config {
        hello_timeout: Duration::from_secs(10),
        ..config()
    });
    let start = Instant::now();
    let mut c = server.connect();
    let frames = c.read_to_close().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "bye");
    assert_eq!(frames[0]["reason"], "hello_timeout");
    let bye_at = start.elapsed();
    assert!(
        bye_at >= Duration::from_secs(10) && bye_at < Duration::from_secs(12),
        "{bye_at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hello_in_time_is_not_timed_out_later() {
    let mut server = Server::new(config());
    let mut c = server.connect();
    tokio::time::sleep(Duration::from_secs(9)).await;
    c.hello("late").await;
    // Past the hello deadline, the session is kept by the keepalive rule instead: the first
    // thing it hears is a ping, a ping interval after the hello.
    let start = Instant::now();
    assert_eq!(c.recv().await, json!({"type":"ping"}));
    let at = start.elapsed();
    assert!(
        at >= Duration::from_secs(60) && at < Duration::from_secs(61),
        "{at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn silence_is_pinged_then_ended_and_the_room_is_told() {
    let mut server = Server::new(config());
    let mut alive = server.registered("alive").await;
    let mut silent = server.registered("silent").await;
    assert_eq!(alive.recv().await["type"], "join");
    let start = Instant::now();

    // The live client answers every ping; the silent one answers none.
    let mut pings = Vec::new();
    let quit = loop {
        let v = alive.recv().await;
        match v["type"].as_str() {
            Some("ping") => {
                pings.push(start.elapsed());
                alive.send(json!({"type":"pong"})).await;
            }
            Some("quit") => break (v, start.elapsed()),
            _ => panic!("unexpected {v}"),
        }
    };
    assert_eq!(
        quit.0,
        json!({"type":"quit","nick":"silent","reason":"ping timeout"})
    );
    // Pinged after 60 s of silence, closed after 60 more without an answer.
    let secs = quit.1.as_secs();
    assert!((120..=121).contains(&secs), "quit at {:?}", quit.1);
    assert!(!pings.is_empty(), "the live client was pinged too");
    let frames = silent.read_to_close().await;
    assert_eq!(frames[0], json!({"type":"ping"}));
    assert_eq!(frames.last().unwrap()["reason"], "ping_timeout");
    // The live one, which answered, is still there.
    let seen = alive.sync().await;
    assert!(seen.iter().all(|v| v["type"] == "ping"), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn half_a_line_is_silence() {
    let mut server = Server::new(config());
    // Before hello: bytes that never make a line do not move the hello deadline.
    let start = Instant::now();
    let mut c = server.connect();
    c.send_raw_bytes(b"{\"type\":\"hel").await;
    let frames = c.read_to_close().await;
    assert_eq!(frames.last().unwrap()["reason"], "hello_timeout");
    assert!(
        start.elapsed() < Duration::from_secs(11),
        "{:?}",
        start.elapsed()
    );
    // After hello: a stalled half line is silence, so a ping, then ping_timeout.
    let mut c = server.registered("staller").await;
    let start = Instant::now();
    c.send_raw_bytes(b"{\"type\":\"say\",\"room\":\"lob").await;
    let frames = c.read_to_close().await;
    assert_eq!(frames.first().unwrap(), &json!({"type":"ping"}));
    assert_eq!(frames.last().unwrap()["reason"], "ping_timeout");
    let secs = start.elapsed().as_secs();
    assert!((120..=121).contains(&secs), "{secs}");
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_refuses_past_the_burst_and_refills_with_time() {
    let mut server = Server::new(config()); // burst 10, 5 per second
    let mut ann = server.registered("ann").await;
    let mut bob = server.registered("bob").await;
    ann.expect("join").await;
    for i in 0..12 {
        ann.send(json!({"type":"say","id":i,"room":"lobby","text":format!("m{i}")}))
            .await;
    }
    let mut replies = Vec::new();
    for _ in 0..12 {
        let v = ann.recv().await;
        replies.push((
            v["re"].as_i64().unwrap(),
            v["type"].as_str().unwrap().to_owned(),
        ));
    }
    let refused: Vec<i64> = replies
        .iter()
        .filter(|(_, t)| t == "error")
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(refused, [10, 11], "{replies:?}");
    // A refused message is not delivered.
    let mut texts = Vec::new();
    for _ in 0..10 {
        texts.push(
            bob.expect("message").await["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(texts, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert!(
        bob.sync().await.is_empty(),
        "m10 and m11 were not delivered"
    );
    // 5 per second: one second later, five more pass and the sixth is refused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 20..26 {
        ann.send(json!({"type":"say","id":i,"room":"lobby","text":"again"}))
            .await;
    }
    let kinds: Vec<String> = {
        let mut k = Vec::new();
        for _ in 0..6 {
            k.push(ann.recv().await["type"].as_str().unwrap().to_owned());
        }
        k
    };
    assert_eq!(kinds, ["ok", "ok", "ok", "ok", "ok", "error"]);
}

#[tokio::test(start_paused = true)]
async fn twenty_protocol_errors_within_a_minute_end_the_session() {
    let mut server = Server::new(config());
    let mut c = server.registered("clumsy").await;
    // 19, then a minute passes: the window forgets them.
    for _ in 0..19 {
        c.send_raw("{not json").await;
        assert_eq!(c.recv().await["code"], "bad_json");
    }
    tokio::time::sleep(Duration::from_secs(61)).await;
    for _ in 0..19 {
        c.send_raw("{not json").await;
    }
    let seen = c.sync().await;
    let errors = seen.iter().filter(|v| v["type"] == "error").count();
    assert_eq!(errors, 19, "still connected after 19 within a minute");
    c.send_raw("{not json").await;
    let frames = c.read_to_close().await;
    let tail: Vec<_> = frames
        .iter()
        .map(|v| v["code"].as_str().or(v["reason"].as_str()).unwrap_or("?"))
        .collect();
    assert_eq!(tail, ["bad_json", "too_many_errors", "too_many_errors"]);
    assert_eq!(frames.last().unwrap()["type"], "bye");
}

#[tokio::test(start_paused = true)]
async fn fifty_rate_limited_messages_within_a_minute_are_a_flood() {
    let mut server = Server::new(config());
    let mut c = server.registered("flood").await;
    for i in 0..60 {
        c.send(json!({"type":"say","id":i,"room":"lobby","text":"x"}))
            .await;
    }
    let frames = c.read_to_close().await;
    let refused = frames
        .iter()
        .filter(|v| v["code"] == "rate_limited")
        .count();
    assert_eq!(refused, 50, "{frames:?}");
    let bye = frames.last().unwrap();
    assert_eq!(
        (bye["type"].as_str(), bye["reason"].as_str()),
        (Some("bye"), Some("flood"))
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_says_bye_to_registered_and_unregistered_sessions() {
    let mut server = Server::new(config());
    let mut ann = server.registered("ann").await;
    let mut bob = server.registered("bob").await;
    let mut anon = server.connect();
    ann.expect("join").await;
    bob.sync().await;
    server.shutdown.cancel();
    for c in [&mut ann, &mut bob, &mut anon] {
        let frames = c.read_to_close().await;
        assert_eq!(frames.len(), 1, "no quit storm: {frames:?}");
        assert_eq!(frames[0]["reason"], "shutting_down");
    }
}

/// Say `count` messages and return how many were accepted (the rest are `rate_limited`).
async fn say_many(c: &mut crate::support::Wire, count: usize) -> usize {
    for i in 0..count {
        c.send(json!({"type":"say","id":i,"room":"lobby","text":"x"}))
            .await;
    }
    let mut ok = 0;
    for _ in 0..count {
        let v = c.expect_reply().await;
        match v["type"].as_str() {
            Some("ok") => ok += 1,
            _ => assert_eq!(v["code"], "rate_limited", "{v}"),
        }
    }
    ok
}

#[tokio::test(start_paused = true)]
async fn reconnecting_does_not_refill_the_rate_limit() {
    let mut server = Server::new(config()); // burst 10, 5 per second
    let mut ann = server.registered("ann").await;
    assert_eq!(say_many(&mut ann, 10).await, 10);
    ann.send(json!({"type":"quit"})).await;
    ann.read_to_close().await;
    // The same nick on a new connection: the budget is the nick's, still spent.
    let mut again = server.registered("ann").await;
    assert_eq!(say_many(&mut again, 3).await, 0);
    // Time refills it as usual.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(say_many(&mut again, 6).await, 5);
}

#[tokio::test(start_paused = true)]
async fn new_nicks_from_one_address_share_its_budget() {
    let mut server = Server::new(config());
    let address = Source::Ip([127, 0, 0, 9].into());
    let mut accepted = 0;
    for n in 0..6 {
        let mut c = server.connect_from(address);
        c.hello(&format!("sock{n}")).await;
        accepted += say_many(&mut c, 10).await;
    }
    assert_eq!(accepted, 40, "four nicks' worth of messages per address");
    // Another address is not affected.
    let mut other = server.connect_from(Source::Ip([127, 0, 0, 10].into()));
    other.hello("neighbour").await;
    assert_eq!(say_many(&mut other, 10).await, 10);
}

#[tokio::test(start_paused = true)]
async fn requests_that_tell_others_are_budgeted_but_a_rejoin_of_100_rooms_is_not() {
    let mut server = Server::new(config()); // 200 in a burst, 2 per second
    let mut honest = server.registered("honest").await;
    // A client restoring its 99 rooms (and its status) after a reconnect is never limited.
    for i in 0..99 {
        honest
            .send(json!({"type":"join","id":i,"room":format!("r{i}")}))
            .await;
    }
    honest
        .send(json!({"type":"status","id":"s","status":"away"}))
        .await;
    for _ in 0..100 {
        assert_eq!(honest.expect_reply().await["type"], "ok");
    }

    // A status flood: the burst passes, then each is refused with a hint, and nobody is told.
    let mut flood = server.registered("flood").await;
    let mut refused = None;
    for i in 0..250 {
        flood
            .send(json!({"type":"status","id":i,"status":"busy"}))
            .await;
        let reply = flood.expect_reply().await;
        if reply["type"] == "error" {
            refused = Some((i, reply));
            break;
        }
    }
    let (i, reply) = refused.expect("the flood was refused");
    assert_eq!(i, 199, "the burst is 200, and registering took one");
    assert_eq!(reply["code"], "rate_limited");
    assert_eq!(reply["retry_after_ms"], 500, "2 per second");
    let before = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    flood
        .send(json!({"type":"status","id":"late","status":"online"}))
        .await;
    assert_eq!(flood.expect_reply().await["type"], "ok");
    assert!(before.elapsed() >= Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn registrations_from_one_address_are_budgeted_as_events() {
    // Each arrival tells the default room (and each departure again): reconnecting in a loop
    // spends the address's events budget, 4 x 200, then is refused until it refills.
    let mut server = Server::new(config());
    let address = Source::Ip([127, 0, 0, 9].into());
    for n in 0..800 {
        let mut c = server.connect_from(address);
        c.hello(&format!("loop{n}")).await;
        c.send(json!({"type":"quit"})).await;
        c.read_to_close().await;
    }
    let mut c = server.connect_from(address);
    c.send(json!({"type":"hello","nick":"loop800"})).await;
    let refused = c.recv().await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["retry_after_ms"], 125, "8 a second for an address");
    // Still connected, not registered: the same hello passes once the budget has refilled.
    tokio::time::sleep(Duration::from_millis(125)).await;
    assert_eq!(c.hello("loop800").await["type"], "welcome");
    // Another address is not affected.
    let mut other = server.connect_from(Source::Ip([127, 0, 0, 10].into()));
    assert_eq!(other.hello("neighbour").await["type"], "welcome");
}

#[tokio::test(start_paused = true)]
async fn history_is_charged_by_its_size() {
    let mut server = Server::new(Config {
        limits: lanchat_protocol::Limits {
            reply_bytes_burst: Some(20_000),
            reply_bytes_per_sec: Some(10_000),
            ..lanchat_protocol::Limits::default()
        },
        ..config()
    });
    let mut ann = server.registered("ann").await;
    tokio::time::sleep(Duration::from_secs(10)).await; // refill the message budget
    for i in 0..10 {
        ann.send(json!({"type":"say","id":i,"room":"lobby","text":"x".repeat(1000)}))
            .await;
        assert_eq!(ann.expect_reply().await["type"], "ok");
    }
    // Each reply is about 10 kB: two pass, the third finds the budget in debt.
    let mut kinds = Vec::new();
    for i in 0..3 {
        ann.send(json!({"type":"history","id":i,"room":"lobby","limit":10}))
            .await;
        let reply = ann.expect_reply().await;
        kinds.push(reply["type"].as_str().unwrap().to_owned());
        if reply["type"] == "error" {
            assert_eq!(reply["code"], "rate_limited");
            assert!(reply["retry_after_ms"].as_u64().unwrap() > 0);
        }
    }
    assert_eq!(kinds, ["ok", "ok", "error"]);
}
