//! The session over a fake server: scripts, --json, input typed while reconnecting.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;
use crate::testing::{fake_dialer, FakeServer, Servers, T};

/// Keeps what is shown, without time stamps, and reports each line as it comes.
#[derive(Clone)]
struct Captured {
    lines: Arc<Mutex<Vec<String>>>,
    each: mpsc::UnboundedSender<String>,
}

impl Captured {
    fn new() -> (Captured, mpsc::UnboundedReceiver<String>) {
        let (each, rx) = mpsc::unbounded_channel();
        let lines = Arc::default();
        (Captured { lines, each }, rx)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn keep(&self, line: String) {
        let _ = self.each.send(line.clone());
        self.lines.lock().unwrap().push(line);
    }
}

impl Screen for Captured {
    fn out(&mut self, text: &str) {
        // Messages of other days (these tests' are from 1970) carry a date too.
        let b = text.as_bytes();
        let dated = b.len() > 11 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ';
        let text = if dated { &text[11..] } else { text };
        let b = text.as_bytes();
        let stamped = b.len() > 6 && b[2] == b':' && b[5] == b' ';
        self.keep(if stamped { &text[6..] } else { text }.to_owned());
    }

    fn err(&mut self, text: &str) {
        self.keep(format!("stderr: {text}"));
    }
}

fn options(mode: Mode, room: Option<&str>) -> Options {
    Options {
        nick: "ann".into(),
        password: None,
        room: room.map(str::to_owned),
        mode,
        color: false,
        bell: false,
        secrets: Secrets::none(),
        ask_password: false,
        extras: Default::default(),
    }
}

/// Plays the server for each connection in turn, answering as a server would, until the
/// client quits (the answer is `bye`) or, on the first connection, `drop_after` requests
/// were answered; returns the type (and room) of each request.
async fn serve(mut servers: Servers, mut drop_after: Option<usize>) -> Vec<String> {
    let mut asked = Vec::new();
    let mut first = true;
    while let Some(stream) = servers.recv().await {
        let drop_here = drop_after.take();
        let mut server = FakeServer::new(stream);
        server.welcome(&["lobby"], 10, 5).await;
        let mut answered = 0;
        // Quiet for minutes of a paused clock while a DM waits: a long bound.
        while let Some(request) = server.next_within(Duration::from_secs(600)).await {
            let room = request["room"].as_str().unwrap_or("").to_owned();
            let kind = request["type"].as_str().unwrap_or("").to_owned();
            if kind == "rooms" {
                // The room names an interactive session learns for completion: not counted.
                let rooms = json!({"type": "ok", "cmd": "rooms", "rooms": []});
                server.answer(&request, rooms).await;
                continue;
            }
            asked.push(format!("{kind} {room}").trim_end().to_owned());
            let members = json!([{"nick": "ann", "status": "online"}]);
            let history = |messages: Value| json!({"type": "ok", "cmd": "history", "room": room, "messages": messages});
            let reply = match kind.as_str() {
                "history" if room == "lobby" && first => history(json!([{"id": "01", "ts": 1,
                    "room": "lobby", "from": "bob", "text": "earlier"}])),
                "history" => history(json!([])),
                "who" => json!({"type": "ok", "cmd": "who", "room": room, "members": members}),
                "join" => json!({"type": "ok", "cmd": "join", "room": room, "topic": "",
                    "members": members}),
                "say" => json!({"type": "ok", "cmd": "say", "id": "02", "ts": 2,
                    "room": room}),
                "dm" => json!({"type": "error", "code": "no_such_nick",
                    "message": "no such nick"}),
                "quit" => {
                    let bye = json!({"type": "bye", "reason": "quit", "message": "bye"});
                    server.send(&bye.to_string()).await;
                    return asked;
                }
                other => panic!("unexpected {other}"),
            };
            server.answer(&request, reply).await;
            answered += 1;
            if drop_here == Some(answered) {
                break;
            }
        }
        first = false;
    }
    asked
}

async fn wait_for(shown: &mut mpsc::UnboundedReceiver<String>, what: &str) {
    while let Some(line) = timeout(T, shown.recv()).await.unwrap() {
        if line.contains(what) {
            return;
        }
    }
}

#[tokio::test]
async fn a_script_joins_its_room_says_its_lines_and_says_goodbye() {
    let (dialer, servers, _) = fake_dialer(0);
    let server = tokio::spawn(serve(servers, None));
    let (screen, _) = Captured::new();
    let opts = options(Mode::Script, Some("dev"));
    let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
    timeout(T, session.start()).await.unwrap().unwrap();
    let (typed, input) = mpsc::channel(4);
    typed.send("hello".into()).await.unwrap();
    drop(typed);
    timeout(T, session.run(input)).await.unwrap().unwrap();
    assert_eq!(
        screen.lines(),
        [
            "-- connected to office (fake/1) as ann",
            "-- earlier in #lobby (1 message):",
            "#lobby <bob> earlier",
            "-- end of earlier messages in #lobby",
            "-- joined #dev",
            "-- #dev: 1 here: ann",
            "#dev <ann> hello",
        ]
    );
    let asked = timeout(T, server).await.unwrap().unwrap();
    assert_eq!(
        asked,
        [
            "history lobby",
            "join dev",
            "history dev",
            "say dev",
            "quit"
        ]
    );
}

#[tokio::test]
async fn json_mode_prints_every_frame_through_the_goodbye() {
    let (dialer, servers, _) = fake_dialer(0);
    let server = tokio::spawn(serve(servers, None));
    let (screen, _) = Captured::new();
    let mut session = Session::new(
        options(Mode::Json, None),
        dialer,
        Box::new(screen.clone()),
        None,
    );
    timeout(T, session.start()).await.unwrap().unwrap();
    let (_, input) = mpsc::channel(1);
    timeout(T, session.run(input)).await.unwrap().unwrap();
    let lines = screen.lines();
    assert_eq!(
        lines[0],
        "stderr: lanchat: connected to office (fake/1) as ann"
    );
    let frames: Vec<Value> = lines[1..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["welcome", "ok", "bye"]);
    timeout(T, server).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn lines_typed_while_reconnecting_are_sent_once_reconnected() {
    let (dialer, servers, _) = fake_dialer(0);
    // The first connection drops after the who and history of the start.
    let server = tokio::spawn(serve(servers, Some(2)));
    let (screen, mut shown) = Captured::new();
    let opts = options(Mode::Interactive, None);
    let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
    timeout(T, session.start()).await.unwrap().unwrap();
    let (typed, input) = mpsc::channel(4);
    let user = async move {
        wait_for(&mut shown, "reconnecting").await;
        typed.send("hi".into()).await.unwrap();
        wait_for(&mut shown, "<ann> hi").await;
    };
    let (ended, ()) = tokio::join!(timeout(T, session.run(input)), user);
    ended.unwrap().unwrap();
    assert_eq!(
        screen.lines(),
        [
            "-- connected to office (fake/1) as ann",
            "-- earlier in #lobby (1 message):",
            "<bob> earlier",
            "-- end of earlier messages in #lobby",
            "-- connection lost: the server closed the connection; reconnecting",
            "-- not connected; this will be sent once reconnected",
            "-- reconnected to office as ann; caught up 0 messages",
            "<ann> hi",
        ]
    );
    let asked = timeout(T, server).await.unwrap().unwrap();
    assert_eq!(
        asked,
        [
            "who lobby",
            "history lobby",
            "who lobby",
            "history lobby",
            "say lobby",
            "quit"
        ]
    );
}

/// One connection whose server refuses `ann` (so the client is `ann_2`) and every `nick`
/// request; answers the rest. Returns each request's type and room or nick, with its time.
async fn serve_nick_taken(mut servers: Servers) -> Vec<(String, Instant)> {
    let mut asked = Vec::new();
    let stream = servers.recv().await.unwrap();
    let mut server = FakeServer::new(stream);
    let hello = server.recv().await;
    let taken = json!({"type": "error", "code": "nick_taken", "message": "taken"});
    server.answer(&hello, taken).await;
    server.welcome(&["lobby", "dev"], 10, 5).await;
    while let Some(request) = server.next_within(Duration::from_secs(600)).await {
        let kind = request["type"].as_str().unwrap_or("").to_owned();
        let arg = request["room"].as_str().or(request["nick"].as_str());
        let room = request["room"].as_str().unwrap_or("").to_owned();
        asked.push((
            format!("{kind} {}", arg.unwrap_or(""))
                .trim_end()
                .to_owned(),
            Instant::now(),
        ));
        let members = json!([{"nick": "ann_2", "status": "online"}]);
        let reply = match kind.as_str() {
            "who" => json!({"type": "ok", "cmd": "who", "room": room, "members": members}),
            "history" => {
                json!({"type": "ok", "cmd": "history", "room": room, "messages": []})
            }
            "say" => json!({"type": "ok", "cmd": "say", "id": "02", "ts": 2, "room": room}),
            "nick" => json!({"type": "error", "code": "nick_taken", "message": "taken"}),
            "rooms" => json!({"type": "ok", "cmd": "rooms", "rooms": []}),
            "quit" => {
                let bye = json!({"type": "bye", "reason": "quit", "message": "bye"});
                server.send(&bye.to_string()).await;
                return asked;
            }
            other => panic!("unexpected {other}"),
        };
        server.answer(&request, reply).await;
    }
    asked
}

#[tokio::test(start_paused = true)]
async fn the_nick_asked_for_is_tried_again_on_a_bounded_back_off() {
    let (dialer, servers, _) = fake_dialer(0);
    let server = tokio::spawn(serve_nick_taken(servers));
    let (screen, mut shown) = Captured::new();
    let opts = options(Mode::Interactive, None);
    let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
    timeout(T, session.start()).await.unwrap().unwrap();
    let started = Instant::now();
    let (typed, input) = mpsc::channel::<Typed>(4);
    // Minutes of a paused clock: no wait per line here, one bound for all.
    let user = async move {
        while let Some(line) = shown.recv().await {
            if line.contains("stopped trying") {
                break;
            }
        }
        drop(typed);
    };
    let bound = Duration::from_secs(600);
    let (ended, waited) = tokio::join!(timeout(bound, session.run(input)), timeout(bound, user));
    ended.unwrap().unwrap();
    waited.unwrap();
    let asked = timeout(T, server).await.unwrap().unwrap();
    let tries: Vec<u64> = asked
        .iter()
        .filter(|(what, _)| what == "nick ann")
        .map(|(_, at)| (*at - started).as_secs())
        .collect();
    // 2 s, then waits of 4, 8, 16, 32 and 60 s (capped), eight tries in all.
    assert_eq!(tries, [2, 6, 14, 30, 62, 122, 182, 242]);
    assert!(screen
        .lines()
        .contains(&"-- ann is still taken; stopped trying (/nick ann to try again)".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_line_goes_to_the_room_its_prompt_named() {
    let (dialer, servers, _) = fake_dialer(0);
    let server = tokio::spawn(serve_nick_taken(servers));
    let (screen, _) = Captured::new();
    let opts = options(Mode::Interactive, None);
    let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
    timeout(T, session.start()).await.unwrap().unwrap();
    let (typed, input) = mpsc::channel::<Typed>(4);
    // The current room is #lobby; the first line was read under a `#dev>` prompt.
    let under = |line: &str, room: Option<&str>| Typed {
        line: line.into(),
        room: room.map(str::to_owned),
    };
    typed.send(under("for dev", Some("dev"))).await.unwrap();
    typed
        .send(under("for the current room", None))
        .await
        .unwrap();
    typed
        .send(under("for a room left", Some("gone")))
        .await
        .unwrap();
    drop(typed);
    timeout(T, session.run(input)).await.unwrap().unwrap();
    let asked: Vec<String> = timeout(T, server)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|(what, _)| what)
        .filter(|what| what.starts_with("say"))
        .collect();
    assert_eq!(asked, ["say dev", "say lobby"]);
    assert!(screen.lines().contains(
        &"!! not sent: you are no longer in #gone (the prompt named it): for a room left"
            .to_owned()
    ));
}

#[tokio::test(start_paused = true)]
async fn a_dm_typed_offline_is_tried_for_two_minutes_then_shown_with_its_text() {
    let (dialer, servers, _) = fake_dialer(0);
    let server = tokio::spawn(serve(servers, Some(2)));
    let (screen, mut shown) = Captured::new();
    let opts = options(Mode::Interactive, None);
    let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
    timeout(T, session.start()).await.unwrap().unwrap();
    let (typed, input) = mpsc::channel(4);
    let started = Instant::now();
    let user = async move {
        wait_for(&mut shown, "reconnecting").await;
        typed.send("/msg bob still there?".into()).await.unwrap();
        while let Some(line) = shown.recv().await {
            if line.contains("not delivered") {
                break;
            }
        }
    };
    let bound = Duration::from_secs(600);
    let (ended, waited) = tokio::join!(timeout(bound, session.run(input)), timeout(bound, user));
    ended.unwrap().unwrap();
    waited.unwrap();
    let gave_up = started.elapsed().as_secs();
    let lines = screen.lines();
    assert!(
        lines
            .contains(&"-- bob is not back yet; trying again for two minutes: still there?".into()),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "!! not delivered to bob: no_such_nick: no such nick; it said: still there?"
    );
    // Sent on reconnecting (the back-off first), then after 4, 8, 16, 30, 30 and 30 s: seven
    // tries in 118 s.
    assert!((118..=121).contains(&gave_up), "{gave_up} s");
    let asked = timeout(T, server).await.unwrap().unwrap();
    assert_eq!(
        asked.iter().filter(|a| a.as_str() == "dm").count(),
        7,
        "{asked:?}"
    );
}

#[tokio::test]
async fn a_message_over_the_limit_is_sent_as_several_and_the_user_told() {
    let (dialer, servers, _) = fake_dialer(0);
    let server = tokio::spawn(serve(servers, None));
    let (screen, _) = Captured::new();
    let opts = options(Mode::Script, Some("dev"));
    let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
    timeout(T, session.start()).await.unwrap().unwrap();
    let (typed, input) = mpsc::channel(4);
    // 5,000 bytes; the fake server's max_text is 4,096.
    typed.send("word ".repeat(1000).into()).await.unwrap();
    drop(typed);
    timeout(T, session.run(input)).await.unwrap().unwrap();
    let lines = screen.lines();
    assert!(
        lines.contains(
            &"-- the message is over the server's limit of 4096 bytes: sent as 2 messages"
                .to_owned()
        ),
        "{lines:?}"
    );
    let asked = timeout(T, server).await.unwrap().unwrap();
    assert_eq!(asked.iter().filter(|a| *a == "say dev").count(), 2);
}
