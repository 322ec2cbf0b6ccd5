//! The link over in-memory connections: a fake dialer hands out `duplex` streams whose other
//! end a test plays the server on. Tests of waits run on tokio's paused clock, so a two-minute
//! back-off takes milliseconds and every wait can be checked to the tick.

use lanchat_protocol::{Bye, ReplyData, Status};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::sleep;

use super::*;
use crate::testing::{fake_dialer, FakeServer, T};

/// The user during a reconnect: waits as asked (or quits at the given wait), keeps what it is
/// shown.
#[derive(Default)]
struct User {
    waits: Vec<Duration>,
    shown: Vec<Show>,
    quit_at_wait: Option<usize>,
}

impl Reconnecting for User {
    async fn wait(&mut self, pause: Duration) -> bool {
        self.waits.push(pause);
        if self.quit_at_wait == Some(self.waits.len()) {
            return false;
        }
        sleep(pause).await;
        true
    }

    fn show(&mut self, show: Vec<Show>, _me: &str) {
        self.shown.extend(show);
    }
}

impl User {
    fn notices(&self) -> Vec<&str> {
        self.shown
            .iter()
            .filter_map(|s| match s {
                Show::Info(t) | Show::Error(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A link connected as `ann` to a server task running `script` on its end.
async fn connected<F, Fut, R>(burst: u32, per_sec: u32, script: F) -> (Link, JoinHandle<R>)
where
    F: FnOnce(FakeServer) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send,
    R: Send + 'static,
{
    let (dialer, mut servers, _) = fake_dialer(0);
    let mut link = Link::new(dialer, None, None);
    let server = tokio::spawn(async move {
        let mut server = FakeServer::new(servers.recv().await.expect("a dial"));
        server.welcome(&[], burst, per_sec).await;
        script(server).await
    });
    link.connect("ann").await.expect("connected");
    (link, server)
}

fn say(text: &str) -> Command {
    Command::Say {
        room: "lobby".into(),
        text: text.into(),
    }
}

#[tokio::test]
async fn hello_takes_the_next_suffix_while_the_nick_is_taken() {
    let (dialer, mut servers, _) = fake_dialer(0);
    let mut link = Link::new(dialer, Some("secret".into()), None);
    let server = tokio::spawn(async move {
        let mut server = FakeServer::new(servers.recv().await.unwrap());
        let first = server.recv().await;
        let taken = json!({"type": "error", "code": "nick_taken", "message": "taken"});
        server.answer(&first, taken).await;
        let second = server.welcome(&["lobby"], 10, 5).await;
        (first, second, server)
    });
    let connected = link.connect("ann").await.unwrap();
    assert!(connected.nick_taken);
    assert_eq!(connected.welcome.nick, "ann_2");
    assert_eq!(connected.welcome.rooms, ["lobby"]);
    let (first, second, _server) = server.await.unwrap();
    assert_eq!(first["nick"], "ann");
    assert_eq!(first["password"], "secret");
    assert_eq!(first["protocol"], 1);
    assert_eq!(second["nick"], "ann_2");
}

#[tokio::test]
async fn hello_carries_the_kept_secret_and_a_registered_nick_is_passed_by() {
    let (dialer, mut servers, _) = fake_dialer(0);
    let server_name = dialer.to_string();
    let dir = std::env::temp_dir().join(format!("lanchat-link-{}", uuid::Uuid::new_v4()));
    let secrets = crate::secrets::Secrets::at(dir.join("secrets.json"));
    secrets
        .put(&server_name, "ann_2", "ann_2's secret")
        .unwrap();
    let mut link = Link::new(dialer, None, None).with_secrets(secrets);
    let server = tokio::spawn(async move {
        let mut server = FakeServer::new(servers.recv().await.unwrap());
        let first = server.recv().await;
        let registered = json!({"type": "error", "code": "nick_registered", "message": "m"});
        server.answer(&first, registered).await;
        let second = server.welcome(&["lobby"], 10, 5).await;
        (first, second, server)
    });
    let connected = link.connect("ann").await.unwrap();
    assert_eq!(connected.welcome.nick, "ann_2");
    let (first, second, _server) = server.await.unwrap();
    assert_eq!(first.get("secret"), None, "no secret kept for ann");
    assert_eq!(second["secret"], "ann_2's secret");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn refused_hellos_are_retried_only_when_waiting_can_help() {
    for code in ["server_full", "auth_failed", "nick_invalid"] {
        let (dialer, mut servers, _) = fake_dialer(0);
        let mut link = Link::new(dialer, None, None);
        tokio::spawn(async move {
            let mut server = FakeServer::new(servers.recv().await.unwrap());
            let hello = server.recv().await;
            let refusal = json!({"type": "error", "code": code, "message": "no"});
            server.answer(&hello, refusal).await;
            server
        });
        let message = format!("{code}: no");
        let expected = match code {
            "server_full" => ConnectError::Retry(message),
            // Told apart, so that the user can be asked for a password.
            "auth_failed" => ConnectError::AuthFailed(message),
            _ => ConnectError::Fatal(message),
        };
        assert_eq!(link.connect("ann").await.unwrap_err(), expected);
    }
    let (dialer, _servers, _) = fake_dialer(1);
    let refused = Link::new(dialer, None, None).connect("ann").await;
    assert_eq!(refused.unwrap_err(), ConnectError::Retry("refused".into()));
}

/// `ann` in #lobby (last message seen `05`) and #dev, away.
fn model_before_the_loss() -> Model {
    let mut model = Model::new("ann");
    let w: Welcome = serde_json::from_value(json!({"protocol": 1, "server": "fake/1",
        "name": "office", "session": "s0", "nick": "ann", "rooms": ["lobby"], "motd": "",
        "limits": {"max_line": 16384, "max_text": 4096, "rate_burst": 10, "rate_per_sec": 5,
        "ping_interval_s": 60}}))
    .unwrap();
    model.welcomed(&w, false);
    model.started(&w);
    let frame = |v: Value| ServerFrame::decode(v.to_string().as_bytes()).unwrap();
    model.apply_reply(frame(
        json!({"type": "ok", "cmd": "join", "room": "dev", "topic": "",
        "members": []}),
    ));
    model.apply_event(frame(
        json!({"type": "message", "id": "05", "ts": 1, "room": "lobby",
        "from": "bob", "text": "before"}),
    ));
    model.apply_reply(frame(
        json!({"type": "ok", "cmd": "status", "status": "away"}),
    ));
    model
}

fn message(id: &str, room: &str) -> Value {
    json!({"id": id, "ts": 2, "room": room, "from": "bob", "text": "missed"})
}

#[tokio::test(start_paused = true)]
async fn reconnect_backs_off_then_restores_rooms_status_and_missed_messages() {
    let (dialer, mut servers, dials) = fake_dialer(3);
    let mut link = Link::new(dialer, None, None);
    let mut model = model_before_the_loss();
    let server = tokio::spawn(async move {
        let mut server = FakeServer::new(servers.recv().await.unwrap());
        server.welcome(&["lobby", "random"], 10, 5).await;
        let mut requests = Vec::new();
        while let Some(request) = server.next().await {
            let reply = match request["type"].as_str().unwrap() {
                "leave" => json!({"cmd": "leave", "room": request["room"]}),
                "who" => json!({"cmd": "who", "room": request["room"],
                    "members": [{"nick": "ann", "status": "online"}]}),
                "join" => json!({"cmd": "join", "room": request["room"], "topic": "",
                    "members": [{"nick": "ann", "status": "online"}]}),
                "status" => json!({"cmd": "status", "status": request["status"]}),
                "history" if request["room"] == "lobby" => json!({"cmd": "history",
                    "room": "lobby", "messages": [message("05", "lobby"), message("06", "lobby")]}),
                "history" => json!({"cmd": "history", "room": "dev",
                    "messages": [message("07", "dev")]}),
                other => panic!("unexpected {other}"),
            };
            let mut reply = reply;
            reply["type"] = "ok".into();
            server.answer(&request, reply).await;
            requests.push(request);
        }
        requests
    });

    let mut user = User::default();
    let started = Instant::now();
    let restored = link
        .reconnect(Closed::default(), &mut model, &mut user)
        .await;
    assert!(restored.unwrap());

    // Each wait is the back-off (0.5 s, doubling) less up to half of it, and nothing else.
    let dials = dials.lock().unwrap().clone();
    assert_eq!(dials.len(), 4);
    let mut previous = started;
    for (i, (dial, wait)) in dials.iter().zip(&user.waits).enumerate() {
        let full = BACKOFF_START * 2u32.pow(i as u32);
        assert!(*wait >= full / 2 && *wait <= full, "wait {i}: {wait:?}");
        // The paused clock moves in whole milliseconds.
        let gap = *dial - previous;
        assert!(
            gap >= *wait && gap <= *wait + Duration::from_millis(1),
            "gap {i}: {gap:?}"
        );
        previous = *dial;
    }
    assert_eq!(
        user.notices(),
        [
            "connection lost: the server closed the connection; reconnecting",
            "reconnect attempt 1 failed (refused); next try within 1.0 s",
            "reconnected to office as ann; caught up 2 messages",
        ]
    );
    assert_eq!(model.rooms(), ["lobby", "dev"]);
    // The messages caught up come between lines that say so, room by room.
    let caught: Vec<String> = user
        .shown
        .iter()
        .filter_map(|s| match s {
            Show::Backlog(t) => Some(t.clone()),
            Show::Message { message, .. } => Some(message.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        caught,
        [
            "missed in #lobby while disconnected (1 message):",
            "06",
            "end of missed messages in #lobby",
            "missed in #dev while disconnected (1 message):",
            "07",
            "end of missed messages in #dev",
        ]
    );

    drop(link);
    let requests = timeout(T, server).await.unwrap().unwrap();
    let asked: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {} {}", r["type"], r["room"], r["after"]))
        .collect();
    assert_eq!(
        asked,
        [
            r#""leave" "random" null"#,
            r#""who" "lobby" null"#,
            r#""join" "dev" null"#,
            "\"status\" null null",
            r#""history" "lobby" "05""#,
            r#""history" "dev" null"#,
        ]
    );
    assert_eq!(requests[3]["status"], "away");
}

#[tokio::test(start_paused = true)]
async fn a_script_gives_up_after_its_limit_and_waits_stop_growing() {
    let (dialer, _servers, dials) = fake_dialer(usize::MAX);
    let mut link = Link::new(dialer, None, Some(Duration::from_secs(120)));
    let mut model = Model::new("ann");
    let mut user = User::default();
    let started = Instant::now();
    let outcome = link
        .reconnect(Closed::default(), &mut model, &mut user)
        .await;
    let Err(Error::Fatal(why)) = outcome else {
        panic!("{outcome:?}")
    };
    let spent = started.elapsed();
    assert!(spent > Duration::from_secs(120) && spent < Duration::from_secs(131));
    let expected = format!(
        "gave up reconnecting to fake after {} s: refused",
        spent.as_secs()
    );
    assert_eq!(why, expected);
    assert!(user.waits.iter().all(|w| *w <= BACKOFF_MAX));
    assert!(user.waits[6..].iter().all(|w| *w >= BACKOFF_MAX / 2));
    assert_eq!(dials.lock().unwrap().len(), user.waits.len());
    // Failures are reported at the first attempt and every fifth.
    let reported: Vec<&str> = user.notices()[1..]
        .iter()
        .map(|n| n.split(' ').nth(2).unwrap())
        .collect();
    let every_fifth: Vec<String> = (0..reported.len())
        .map(|i| if i == 0 { 1 } else { 5 * i }.to_string())
        .collect();
    assert_eq!(reported, every_fifth);
}

#[tokio::test(start_paused = true)]
async fn a_final_goodbye_or_a_quit_while_waiting_dials_no_more() {
    let (dialer, _servers, dials) = fake_dialer(usize::MAX);
    let mut link = Link::new(dialer, None, None);
    let mut model = Model::new("ann");
    let mut user = User::default();
    let closed = Closed {
        bye: Some(Bye {
            re: None,
            reason: ByeReason::AuthFailed,
            message: "wrong password".into(),
        }),
        error: None,
    };
    let outcome = link.reconnect(closed, &mut model, &mut user).await;
    let Err(Error::Fatal(why)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(why, "disconnected: wrong password (auth_failed)");
    assert!(user.shown.is_empty());

    let mut user = User {
        quit_at_wait: Some(3),
        ..User::default()
    };
    let outcome = link
        .reconnect(Closed::default(), &mut model, &mut user)
        .await;
    assert!(!outcome.unwrap());
    assert_eq!(dials.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn messages_are_paced_a_little_under_the_announced_rate() {
    // burst 3 and 10/s: the client keeps to a burst of 2 and 9/s.
    let (mut link, server) = connected(3, 10, |mut server| async move {
        let mut arrivals = Vec::new();
        for n in 0..4 {
            let request = server.recv().await;
            arrivals.push(Instant::now());
            if n == 1 {
                let event = json!({"type": "join", "room": "lobby", "nick": "cat"});
                server.send(&event.to_string()).await;
            }
            let ok = json!({"type": "ok", "cmd": "say", "id": format!("0{n}"), "ts": 1,
                "room": "lobby"});
            server.answer(&request, ok).await;
        }
        (server, arrivals)
    })
    .await;
    for n in 0..4 {
        let reply = link.submit(&say(&format!("line {n}"))).await.unwrap();
        assert!(matches!(reply.frame, Some(ServerFrame::Reply(_))));
    }
    let (_server, arrivals) = timeout(T, server).await.unwrap().unwrap();
    let after_first: Vec<Duration> = arrivals.iter().map(|t| *t - arrivals[0]).collect();
    // The paused clock moves in whole milliseconds.
    let ninth = Duration::from_secs(1) / 9;
    let near = |d: Duration, want: Duration| d >= want && d <= want + Duration::from_millis(2);
    assert_eq!(after_first[1], Duration::ZERO, "{after_first:?}");
    assert!(near(after_first[2], ninth), "{after_first:?}");
    assert!(near(after_first[3], 2 * ninth), "{after_first:?}");
    // The event that arrived meanwhile was held for later, not lost.
    let held: Vec<Incoming> = std::iter::from_fn(|| link.held()).collect();
    assert!(held
        .iter()
        .any(|f| matches!(f.frame, Some(ServerFrame::Join(_)))));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_requests_are_sent_again_three_times_in_all() {
    let (mut link, server) = connected(10, 5, |mut server| async move {
        let limited = json!({"type": "error", "code": "rate_limited", "message": "slow"});
        let first = server.recv().await;
        server.answer(&first, limited.clone()).await;
        let second = server.recv().await;
        let rooms = json!({"type": "ok", "cmd": "rooms", "rooms": []});
        server.answer(&second, rooms).await;
        for _ in 0..3 {
            let request = server.recv().await;
            server.answer(&request, limited.clone()).await;
        }
        server
    })
    .await;
    let started = Instant::now();
    let reply = link
        .submit(&Command::Rooms {
            after: None,
            limit: None,
        })
        .await
        .unwrap();
    let Some(ServerFrame::Reply(r)) = reply.frame else {
        panic!("{reply:?}")
    };
    assert_eq!(
        r.data,
        ReplyData::Rooms {
            rooms: vec![],
            next: None
        }
    );
    assert_eq!(started.elapsed(), RATE_LIMITED_WAIT);

    let started = Instant::now();
    let reply = link
        .submit(&Command::Rooms {
            after: None,
            limit: None,
        })
        .await
        .unwrap();
    let Some(ServerFrame::Error(e)) = reply.frame else {
        panic!("{reply:?}")
    };
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert_eq!(started.elapsed(), 2 * RATE_LIMITED_WAIT);
    drop(server);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_sets_the_wait() {
    let (mut link, server) = connected(10, 5, |mut server| async move {
        let hinted = |ms: u64| {
            json!({"type": "error", "code": "rate_limited", "message": "slow", "retry_after_ms": ms})
        };
        let first = server.recv().await;
        server.answer(&first, hinted(250)).await;
        let second = server.recv().await;
        server.answer(&second, hinted(2_000)).await;
        let third = server.recv().await;
        let rooms = json!({"type": "ok", "cmd": "rooms", "rooms": []});
        server.answer(&third, rooms).await;
        server
    })
    .await;
    let started = Instant::now();
    let reply = link
        .submit(&Command::Rooms {
            after: None,
            limit: None,
        })
        .await
        .unwrap();
    assert!(
        matches!(reply.frame, Some(ServerFrame::Reply(_))),
        "{reply:?}"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2_250),
        "as the server asked"
    );
    drop(server);
}

#[test]
fn a_retry_hint_is_bounded_and_its_absence_means_a_second() {
    assert_eq!(retry_wait(None), RATE_LIMITED_WAIT);
    assert_eq!(retry_wait(Some(1)), Duration::from_millis(1));
    assert_eq!(retry_wait(Some(3_600_000)), RATE_LIMITED_WAIT_MAX);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_stops_answering_counts_as_lost() {
    let (mut link, server) = connected(10, 5, |mut server| async move {
        server.recv().await;
        server
    })
    .await;
    let status = Command::Status {
        status: Status::Away,
        text: None,
    };
    let started = Instant::now();
    let Err(Lost(closed)) = link.request(status).await else {
        panic!("answered")
    };
    assert_eq!(closed.to_string(), "the server stopped answering");
    assert_eq!(started.elapsed(), REPLY_TIMEOUT);
    drop(server);
}

#[tokio::test(start_paused = true)]
async fn a_server_flooding_events_while_holding_a_reply_is_dropped() {
    let (mut link, server) = connected(10, 5, |mut server| async move {
        server.recv().await;
        let event = json!({"type": "join", "room": "lobby", "nick": "bob"}).to_string();
        // Never answers; floods until the client hangs up.
        for _ in 0..held::HELD_FRAMES + 10 {
            server.send(&event).await;
        }
        server
    })
    .await;
    let Err(Lost(closed)) = link.request(say("hi")).await else {
        panic!("answered")
    };
    assert_eq!(closed, held::overflow());
    assert!(link.held.len() <= held::HELD_FRAMES);
    // The connection is gone: the next request says so at once.
    assert!(link.request(say("again")).await.is_err());
    drop(server);
}

#[test]
fn suffixes_fit_the_nick_limit() {
    assert_eq!(with_suffix("ann", 1), "ann");
    assert_eq!(with_suffix("ann", 2), "ann_2");
    let long = "x".repeat(32);
    assert_eq!(with_suffix(&long, 12).chars().count(), 32);
    assert!(with_suffix(&long, 12).ends_with("_12"));
}

#[test]
fn jitter_stays_within_half_and_full() {
    for _ in 0..100 {
        let d = jitter(Duration::from_secs(2));
        assert!(
            d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
            "{d:?}"
        );
    }
}

/// Refuses every dial as the TLS dialer does when the certificate is not the pinned one.
struct ImpostorDialer {
    dials: usize,
}

impl fmt::Display for ImpostorDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("impostor")
    }
}

impl Dialer for ImpostorDialer {
    fn dial(&mut self) -> BoxFuture<'_, io::Result<Box<dyn Stream>>> {
        self.dials += 1;
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Untrusted("the certificate does not match its pin".into()),
            ))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_certificate_that_does_not_match_stops_reconnecting_at_once() {
    let mut link = Link::new(Box::new(ImpostorDialer { dials: 0 }), None, None);
    assert_eq!(
        link.connect("ann").await,
        Err(ConnectError::Untrusted(
            "the certificate does not match its pin".into()
        ))
    );
    let mut model = Model::new("ann");
    let mut user = User::default();
    let outcome = link
        .reconnect(Closed::default(), &mut model, &mut user)
        .await;
    let Err(Error::Untrusted(why)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(why, "the certificate does not match its pin");
    assert_eq!(
        user.waits.len(),
        1,
        "one attempt, no retry: {:?}",
        user.waits
    );
}

#[test]
fn several_addresses_are_dialled_in_turn() {
    let mut nodes = TcpDialer::new("10.0.0.1:7878,10.0.0.2:7000");
    assert_eq!(nodes.to_string(), "10.0.0.1:7878");
    assert!(nodes.next_node());
    assert_eq!(nodes.to_string(), "10.0.0.2:7000");
    assert!(nodes.next_node());
    assert_eq!(nodes.to_string(), "10.0.0.1:7878");
    let mut alone = TcpDialer::new("10.0.0.1:7878");
    assert!(!alone.next_node());
    assert_eq!(alone.to_string(), "10.0.0.1:7878");
}

/// Answer the hello with a welcome to the lobby from a node of `cluster` (none: a lone server).
async fn welcome_from(server: &mut FakeServer, cluster: Option<&str>) {
    let hello = server.recv().await;
    let mut frame = json!({"type": "welcome", "protocol": 1, "server": "fake/1",
        "name": format!("node-{}", cluster.unwrap_or("alone")), "session": "s1",
        "nick": hello["nick"], "rooms": ["lobby"], "motd": "",
        "limits": {"max_line": 16384, "max_text": 4096, "rate_burst": 10, "rate_per_sec": 5,
        "ping_interval_s": 60}});
    if let Some(cluster) = cluster {
        frame["cluster"] = json!(cluster);
    }
    server.answer(&hello, frame).await;
}

#[tokio::test(start_paused = true)]
async fn a_cluster_node_lost_is_failed_over_to_the_next_node_of_the_same_cluster() {
    let (dialer, mut servers, _) = crate::testing::fake_nodes(0, 2);
    // Bounded: a script gone wrong gives up instead of dialling forever.
    let mut link = Link::new(dialer, None, Some(Duration::from_secs(60)));
    let server = tokio::spawn(async move {
        // fake-1: the first connection.
        let mut first = FakeServer::new(servers.recv().await.unwrap());
        welcome_from(&mut first, Some("hq")).await;
        // fake-1 again after the loss: full.
        let mut full = FakeServer::new(servers.recv().await.unwrap());
        let hello = full.recv().await;
        let refusal = json!({"type": "error", "code": "server_full", "message": "full"});
        full.answer(&hello, refusal).await;
        // fake-2: a server of another cluster.
        let mut other = FakeServer::new(servers.recv().await.unwrap());
        welcome_from(&mut other, Some("elsewhere")).await;
        // fake-1 once more: back, a node of hq; the lobby's history is caught up.
        let mut back = FakeServer::new(servers.recv().await.unwrap());
        welcome_from(&mut back, Some("hq")).await;
        while let Some(request) = back.next().await {
            let reply = match request["type"].as_str() {
                Some("who") => json!({"type": "ok", "cmd": "who", "room": request["room"],
                    "members": [{"nick": "ann", "status": "online"}]}),
                Some("history") => json!({"type": "ok", "cmd": "history",
                    "room": request["room"], "messages": []}),
                _ => panic!("unexpected {request}"),
            };
            back.answer(&request, reply).await;
        }
        (first, full, other)
    });
    let mut model = Model::new("ann");
    let connected = link.connect("ann").await.unwrap();
    model.welcomed(&connected.welcome, false);
    model.started(&connected.welcome);

    let mut user = User::default();
    let restored = link.reconnect(Closed::default(), &mut model, &mut user);
    assert!(restored.await.unwrap());
    assert_eq!(
        user.notices(),
        [
            "connection lost: the server closed the connection; reconnecting",
            "trying another node of cluster hq: fake-2",
            "reconnect attempt 1 failed (server_full: full); next try within 1.0 s",
            "trying another node of cluster hq: fake-1",
            "reconnected to node-hq as ann; caught up 0 messages",
        ]
    );
    drop(link);
    let _ = server.await.unwrap();
}
