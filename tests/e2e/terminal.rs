//! What the interactive client shows in a real terminal (tmux): multi-line messages as marked
//! continuations, a rogue server's escape sequences kept off the terminal, the user's own message
//! shown once, the bell and a text mark under NO_COLOR, dates and markers on backlog, and nick
//! colours. Some tests talk to the real server; those that need a server to misbehave talk to a
//! small fake one on 127.0.0.1 that speaks just enough of the protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lanchat_tests::tmux::Tmux;
use lanchat_tests::{bin_path, ServerProcess, TempDir, TestClient, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// `lanchat` as ann in a 100x30 tmux pane, with its own data directory.
struct Terminal {
    tmux: Tmux,
    _data: TempDir,
}

impl Terminal {
    /// `env` are `NAME=value` words put before the command (`-u NAME` unsets).
    fn open(addr: &str, env: &[&str], extra: &[&str]) -> Terminal {
        Terminal::open_wide(addr, env, extra, 100)
    }

    fn open_wide(addr: &str, env: &[&str], extra: &[&str], columns: u16) -> Terminal {
        let tmux = Tmux::new();
        let data = TempDir::new("terminal");
        let command = format!(
            "env -u NO_COLOR XDG_DATA_HOME='{0}' XDG_CONFIG_HOME='{0}/config' TERM=xterm {1} '{2}' \
             {addr} --nick ann {3}",
            data.path().display(),
            env.join(" "),
            bin_path("lanchat").display(),
            extra.join(" ")
        );
        tmux.new_session(columns, 30, &command);
        Terminal { tmux, _data: data }
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.tmux.wait_for(what, pred).await
    }

    async fn wait_for_row(&self, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
        self.tmux
            .wait_for(what, |s| s.iter().any(|l| pred(l)))
            .await
    }

    async fn prompt(&self) {
        self.wait_for("the prompt", |s| prompt_row(s).starts_with("#lobby>"))
            .await;
    }

    /// The screen with its colours and styles (`capture-pane -e`).
    fn screen_styled(&self) -> Vec<String> {
        let out = self.tmux.run(&["capture-pane", "-p", "-e", "-t", "chat"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn title(&self) -> String {
        let out = self
            .tmux
            .run(&["display", "-p", "-t", "chat", "#{pane_title}"]);
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

/// The last non-empty row: where the prompt is.
fn prompt_row(screen: &[String]) -> &str {
    screen
        .iter()
        .rev()
        .find(|l| !l.is_empty())
        .map_or("", |l| l.as_str())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A fake server: one connection, answered as the real server would for what the client asks on
/// start (`who`, `history`) and for `say`, `topic`, `quit`; the test sends whatever else it likes
/// through `to_client`.
struct FakeServer {
    addr: SocketAddr,
    to_client: mpsc::UnboundedSender<String>,
}

impl FakeServer {
    /// `welcome` is merged into a valid welcome; `history` is the reply to every history query.
    async fn start(welcome: Value, history: Value) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to_client, mut outgoing) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            loop {
                let line = tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => line,
                        _ => return,
                    },
                    Some(out) = outgoing.recv() => {
                        let _ = write.write_all(format!("{out}\n").as_bytes()).await;
                        continue;
                    }
                };
                let request: Value = serde_json::from_str(&line).unwrap();
                let room = request["room"].clone();
                let mut reply = match request["type"].as_str().unwrap() {
                    "hello" => {
                        let mut frame = json!({"type": "welcome", "protocol": 1,
                            "server": "fake/1", "name": "office", "session": "s1",
                            "nick": request["nick"], "rooms": ["lobby"], "motd": "",
                            "limits": {"max_line": 16384, "max_text": 4096, "rate_burst": 10,
                                "rate_per_sec": 5, "ping_interval_s": 60}});
                        for (k, v) in welcome.as_object().unwrap() {
                            frame[k] = v.clone();
                        }
                        frame
                    }
                    "who" => json!({"type": "ok", "cmd": "who", "room": room,
                        "members": [{"nick": "ann", "status": "online"}]}),
                    "history" => json!({"type": "ok", "cmd": "history", "room": room,
                        "messages": history}),
                    "say" => json!({"type": "ok", "cmd": "say", "room": room, "id": "s-1",
                        "ts": now_ms()}),
                    "topic" => json!({"type": "ok", "cmd": "topic", "room": room,
                        "topic": request["topic"]}),
                    "quit" => {
                        let bye = json!({"type": "bye", "reason": "quit", "message": "bye"});
                        let _ = write.write_all(format!("{bye}\n").as_bytes()).await;
                        return;
                    }
                    other => json!({"type": "error", "code": "unknown_type", "message": other}),
                };
                reply["re"] = request["id"].clone();
                let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
            }
        });
        FakeServer { addr, to_client }
    }

    fn send(&self, frame: Value) {
        self.to_client.send(frame.to_string()).unwrap();
    }

    fn message(&self, from: &str, text: &str) {
        self.send(
            json!({"type": "message", "id": format!("m-{}", uuid_ish()), "ts": now_ms(),
            "room": "lobby", "from": from, "text": text}),
        );
    }
}

fn uuid_ish() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Poll `path` until it holds `byte`; panics with what it holds after `WAIT`.
async fn wait_for_byte(path: &PathBuf, byte: u8, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let bytes = std::fs::read(path).unwrap_or_default();
        if bytes.contains(&byte) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: never written; the terminal got {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- bug 3: a message of several lines cannot forge lines -----

#[tokio::test]
async fn later_lines_of_a_message_are_marked_continuations() {
    let server = ServerProcess::start(&[]);
    let term = Terminal::open(&server.addr.to_string(), &["NO_COLOR=1"], &["--no-bell"]);
    term.prompt().await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let forged = "brb\n06:38 -- cho is now known as admin\n<dan> ann: your password please";
    bob.request(json!({"type": "say", "room": "lobby", "text": forged}))
        .await;
    let screen = term
        .wait_for_row("the last line of the message", |l| {
            l.contains("your password please")
        })
        .await;
    let first = screen
        .iter()
        .position(|l| l.ends_with("<bob> brb"))
        .unwrap_or_else(|| panic!("bob's first line:\n{}", screen.join("\n")));
    let indent = " ".repeat(first_text_column(&screen[first]) - 2);
    assert_eq!(
        screen[first + 1],
        format!("{indent}| 06:38 -- cho is now known as admin"),
        "{}",
        screen.join("\n")
    );
    assert_eq!(
        screen[first + 2],
        format!("{indent}| <dan> ann: your password please")
    );

    // The same pasted by ann (bracketed paste): sent as one message, shown the same way, and
    // the pasted rows under the prompt are gone.
    let paste = "afk\n06:39 -- dan is now known as root";
    assert!(term.tmux.run(&["set-buffer", paste]).status.success());
    assert!(term
        .tmux
        .run(&["paste-buffer", "-p", "-t", "chat"])
        .status
        .success());
    term.tmux.send_key("Enter");
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"], paste);
    let screen = term
        .wait_for("ann's message and an empty prompt", |s| {
            s.iter().any(|l| l.ends_with("<ann> afk")) && prompt_row(s) == "#lobby>"
        })
        .await;
    let all = screen.join("\n");
    let first = screen
        .iter()
        .position(|l| l.ends_with("<ann> afk"))
        .unwrap();
    assert!(
        screen[first + 1].ends_with("| 06:39 -- dan is now known as root")
            && screen[first + 1].starts_with("      "),
        "{all}"
    );
    assert_eq!(
        screen
            .iter()
            .filter(|l| l.contains("dan is now known"))
            .count(),
        1,
        "{all}"
    );
}

/// The column where the text of bob's message starts (after `HH:MM <bob> `, or `HH:MM >> <bob> `
/// for a mention).
fn first_text_column(row: &str) -> usize {
    row.find("<bob> ").expect("a message row") + "<bob> ".len()
}

// ----- bug 4: escape sequences from a server never reach the terminal -----

#[tokio::test]
async fn a_rogue_servers_escape_sequences_stay_off_the_terminal() {
    let welcome = json!({"name": "office\u{1b}]0;pwned-by-name\u{7}",
        "motd": "hello\u{1b}[2J\u{1b}[H from the motd"});
    let server = FakeServer::start(welcome, json!([])).await;
    let term = Terminal::open_wide(
        &server.addr.to_string(),
        &[],
        &["--no-tls", "--no-bell"],
        250,
    );
    term.prompt().await;
    let title = term.title();
    assert!(!title.contains("pwned"), "{title}");

    server.message(
        "mal\u{202e}lory",
        "\u{1b}]0;pwned\u{7}title \u{1b}[2J\u{1b}[Hcleared \u{1b}[31mred \u{9b}2J\u{9d}0;c1\u{9c} end",
    );
    server.send(json!({"type": "topic", "room": "lobby", "by": "mal",
        "topic": "\u{1b}]2;pwned-by-topic\u{1b}\\ \u{1b}[1;1H\u{1b}[K"}));
    server.send(json!({"type": "nick", "old": "mal", "new": "adm\u{202e}nim\u{200b}"}));
    server.send(json!({"type": "error", "code": "bad_frame",
        "message": "\u{1b}[?1049h\u{1b}[2Jgone"}));
    server.message("bob", "the last one");
    let screen = term
        .wait_for_row("the last message", |l| l.ends_with("<bob> the last one"))
        .await;
    let all = screen.join("\n");
    // Nothing was cleared: what came before is still there, in order.
    let connected = screen
        .iter()
        .position(|l| l.contains("connected to office<U+001B>]0;pwned-by-name<U+0007>"))
        .unwrap_or_else(|| panic!("the welcome line:\n{all}"));
    let motd = screen
        .iter()
        .position(|l| l.contains("hello<U+001B>[2J<U+001B>[H from the motd"))
        .unwrap_or_else(|| panic!("the motd:\n{all}"));
    assert!(connected < motd, "{all}");
    for shown in [
        "<mal<U+202E>lory> <U+001B>]0;pwned<U+0007>title <U+001B>[2J<U+001B>[Hcleared <U+001B>[31mred <U+009B>2J<U+009D>0;c1<U+009C> end",
        "-- mal set the topic of #lobby: <U+001B>]2;pwned-by-topic<U+001B>\\ <U+001B>[1;1H<U+001B>[K",
        "-- mal is now known as adm<U+202E>nim<U+200B>",
        "!! bad_frame: <U+001B>[?1049h<U+001B>[2Jgone",
    ] {
        assert!(screen.iter().any(|l| l.ends_with(shown)), "missing {shown:?}:\n{all}");
    }
    assert!(screen.iter().any(|l| l.ends_with("<bob> the last one")));
    assert_eq!(term.title(), title, "the title changed");
    // The prompt is still where it was, not on an alternate screen.
    assert!(prompt_row(&screen).starts_with("#lobby>"), "{all}");
}

// ----- bug 6: the user's own message shows once -----

#[tokio::test]
async fn a_message_typed_shows_once() {
    let server = ServerProcess::start(&[]);
    let term = Terminal::open(&server.addr.to_string(), &["NO_COLOR=1"], &["--no-bell"]);
    term.prompt().await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    term.wait_for_row("bob's join", |l| l.ends_with("-- bob joined #lobby"))
        .await;
    let long = format!("a long one {} the end", "x".repeat(150));
    for (line, echo, tail) in [
        ("hello there", "<ann> hello there", "hello there"),
        (long.as_str(), "<ann> a long one", "the end"),
    ] {
        term.tmux.send_literal(line);
        term.tmux.send_key("Enter");
        let m = bob.skip_until("message").await;
        assert_eq!(m["text"], line);
        let screen = term
            .wait_for("the echo and an empty prompt", |s| {
                s.iter().any(|l| l.contains(echo)) && prompt_row(s) == "#lobby>"
            })
            .await;
        assert_eq!(
            screen.iter().filter(|l| l.contains(tail)).count(),
            1,
            "{line:?} is on screen more than once:\n{}",
            screen.join("\n")
        );
        assert!(
            !screen.iter().any(|l| l.starts_with("#lobby> ")),
            "the typed line stayed:\n{}",
            screen.join("\n")
        );
    }
    // A command stays on screen: what it prints does not repeat it.
    term.tmux.send_literal("/who");
    term.tmux.send_key("Enter");
    term.wait_for("the command and its answer", |s| {
        s.iter().any(|l| l == "#lobby> /who") && s.iter().any(|l| l.contains("-- #lobby: 2 here"))
    })
    .await;
}

/// A line of wide (CJK) characters takes two columns a character: the rows erased when it is
/// entered are the rows it took, not one per character, so no row of it is left behind and the
/// line above it stays. So too for a line that fills its last row to the edge, after which the
/// cursor waits on a row of its own.
#[tokio::test]
async fn a_wide_line_typed_is_replaced_by_its_echo_and_the_line_above_stays() {
    let server = ServerProcess::start(&[]);
    let term = Terminal::open(&server.addr.to_string(), &["NO_COLOR=1"], &["--no-bell"]);
    term.prompt().await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    term.wait_for_row("bob's join", |l| l.ends_with("-- bob joined #lobby"))
        .await;
    bob.request(json!({"type":"say","room":"lobby","text":"just above"}))
        .await;
    term.wait_for_row("bob's line", |l| l.ends_with("<bob> just above"))
        .await;
    // After the 8 columns of the prompt in a 100-column pane: 124 columns in 68 characters (two
    // rows, where counting characters would say one); exactly 92 columns (a full row, then the
    // cursor on the next); exactly 92 ASCII columns.
    let wrapped = format!("{}終わり", "漢字".repeat(29));
    let full = format!("{}おわ", "漢字".repeat(22));
    let ascii = format!("{}the end", "x".repeat(85));
    // The screen's text without the blanks (rows are trimmed, and the echo wraps).
    let flat = |rows: &[String]| rows.concat().split_whitespace().collect::<String>();
    for line in [&wrapped, &full, &ascii] {
        let whole = flat(std::slice::from_ref(line));
        let tail = &line[line.len() - 6..];
        term.tmux.send_literal(line);
        term.wait_for_row("the typed line", |l| l.contains(tail))
            .await;
        term.tmux.send_key("Enter");
        let m = bob.skip_until("message").await;
        assert_eq!(m["text"], line.as_str());
        let screen = term
            .wait_for("the echo and an empty prompt", |s| {
                flat(s).contains(&format!("<ann>{whole}")) && prompt_row(s) == "#lobby>"
            })
            .await;
        let all = screen.join("\n");
        assert!(
            !screen.iter().any(|l| l.starts_with("#lobby> ")),
            "a row of the typed line stayed:\n{all}"
        );
        assert_eq!(flat(&screen).matches(&whole).count(), 1, "{all}");
        assert!(
            screen.iter().any(|l| l.ends_with("<bob> just above")),
            "the line above is gone:\n{all}"
        );
    }
}

// ----- bug 7: NO_COLOR keeps the bell and marks mentions and DMs with text -----

#[tokio::test]
async fn without_colour_mentions_and_dms_ring_and_are_marked() {
    let server = ServerProcess::start(&[]);
    let term = Terminal::open(&server.addr.to_string(), &["NO_COLOR=1"], &[]);
    term.prompt().await;
    let piped = TempDir::new("pipe");
    let output = piped.path().join("output");
    let out = term.tmux.run(&[
        "pipe-pane",
        "-o",
        "-t",
        "chat",
        &format!("cat >> '{}'", output.display()),
    ]);
    assert!(out.status.success());
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    bob.request(json!({"type": "say", "room": "lobby", "text": "no bell for this"}))
        .await;
    term.wait_for_row("a plain message", |l| l.ends_with("<bob> no bell for this"))
        .await;
    let before = std::fs::read(&output).unwrap_or_default();
    assert!(!before.contains(&7), "a bell without a mention");

    bob.request(json!({"type": "say", "room": "lobby", "text": "ann: look at this"}))
        .await;
    let screen = term
        .wait_for_row("the marked mention", |l| {
            l.ends_with(">> <bob> ann: look at this")
        })
        .await;
    wait_for_byte(&output, 7, "the bell for a mention").await;
    assert!(screen
        .iter()
        .any(|l| l.ends_with("<bob> no bell for this") && !l.contains(">>")));

    let rung = std::fs::read(&output).unwrap().len();
    bob.request(json!({"type": "dm", "to": "ann", "text": "psst"}))
        .await;
    term.wait_for_row("the marked DM", |l| l.ends_with(">> *bob* psst"))
        .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let bytes = std::fs::read(&output).unwrap();
        if bytes[rung..].contains(&7) {
            break;
        }
        assert!(Instant::now() < deadline, "no bell for the DM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No colour at all: no SGR colour sequence reached the terminal.
    let text = String::from_utf8_lossy(&std::fs::read(&output).unwrap()).into_owned();
    assert!(
        !text.contains("\u{1b}[38;5;") && !text.contains("\u{1b}[1;35m"),
        "{text:?}"
    );
}

// ----- bug 10: old messages carry their date, backlog is marked -----

#[tokio::test]
async fn backlog_shows_dates_and_where_it_starts_and_ends() {
    let three_days_ago = now_ms() - 3 * 86_400_000;
    let history = json!([
        {"id": "h1", "ts": three_days_ago, "room": "lobby", "from": "bob", "text": "old news"},
        {"id": "h2", "ts": now_ms(), "room": "lobby", "from": "bob", "text": "fresh news"},
    ]);
    let server = FakeServer::start(json!({}), history).await;
    let term = Terminal::open(
        &server.addr.to_string(),
        &["NO_COLOR=1"],
        &["--no-tls", "--no-bell"],
    );
    term.prompt().await;
    server.message("bob", "live now");
    let screen = term
        .wait_for_row("the live message", |l| l.ends_with("<bob> live now"))
        .await;
    let all = screen.join("\n");
    let row = |what: &str| {
        screen
            .iter()
            .position(|l| l.ends_with(what))
            .unwrap_or_else(|| panic!("{what}:\n{all}"))
    };
    let start = row("-- earlier in #lobby (2 messages):");
    let old = row("<bob> old news");
    let fresh = row("<bob> fresh news");
    let end = row("-- end of earlier messages in #lobby");
    let live = row("<bob> live now");
    assert!(
        start < old && old < fresh && fresh < end && end < live,
        "{all}"
    );
    // `YYYY-MM-DD HH:MM` on the old one, `HH:MM` on today's.
    let dated = |l: &str| {
        let b = l.as_bytes();
        b.len() > 16 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':'
    };
    assert!(dated(&screen[old]), "{all}");
    assert!(
        !dated(&screen[fresh]) && screen[fresh].as_bytes()[2] == b':',
        "{all}"
    );
}

// ----- bug 12: nick colours apart, the own nick set apart -----

#[tokio::test]
async fn nicks_have_distinct_colours_and_the_own_nick_stands_out() {
    let server = ServerProcess::start(&[]);
    let term = Terminal::open(&server.addr.to_string(), &[], &["--no-bell"]);
    term.prompt().await;
    let mut others = Vec::new();
    for nick in ["bob", "dan"] {
        let (mut c, _) = TestClient::hello(server.addr, nick).await;
        c.request(json!({"type": "say", "room": "lobby", "text": format!("hi from {nick}")}))
            .await;
        others.push(c);
    }
    term.tmux.send_literal("hi from ann");
    term.tmux.send_key("Enter");
    term.wait_for("three messages", |s| {
        [
            "<bob> hi from bob",
            "<dan> hi from dan",
            "<ann> hi from ann",
        ]
        .iter()
        .all(|m| s.iter().any(|l| l.ends_with(m)))
    })
    .await;
    let styled = term.screen_styled();
    let all = styled.join("\n");
    let nick_style = |nick: &str| -> String {
        let row = styled
            .iter()
            .find(|l| l.contains(&format!("hi from {nick}")))
            .unwrap_or_else(|| panic!("{nick}'s row:\n{all}"));
        // The style sequences between `<` and the nick.
        let at = row.find(&format!("{nick}\u{1b}")).expect("a styled nick");
        let open = row[..at].rfind('<').expect("<");
        row[open + 1..at].to_owned()
    };
    let (ann, bob, dan) = (nick_style("ann"), nick_style("bob"), nick_style("dan"));
    for style in [&ann, &bob, &dan] {
        assert!(
            style.contains("38;5;"),
            "not a 256-colour nick: {style:?}\n{all}"
        );
    }
    assert!(
        ann != bob && bob != dan && ann != dan,
        "{ann:?} {bob:?} {dan:?}"
    );
    // Own nick: bold and underlined (tmux writes each attribute its own way; 1 and 4 are SGR).
    let sgr: Vec<&str> = ann.split(['\u{1b}', '[', 'm', ';']).collect();
    assert!(
        sgr.contains(&"1") && sgr.contains(&"4"),
        "own nick not bold+underline: {ann:?}"
    );
    let bob_sgr: Vec<&str> = bob.split(['\u{1b}', '[', 'm', ';']).collect();
    assert!(!bob_sgr.contains(&"4"), "{bob:?}");
}

// ----- bug 13: a mass rejoin is one line, not one per person -----

#[tokio::test]
async fn a_burst_of_joins_is_summed_up() {
    let server = ServerProcess::start(&[]);
    let term = Terminal::open(&server.addr.to_string(), &["NO_COLOR=1"], &["--no-bell"]);
    term.prompt().await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(TestClient::hello(server.addr, &format!("user{i}")).await.0);
    }
    let screen = term
        .wait_for_row("the summary", |l| {
            l.ends_with("-- 5 more people joined #lobby: user3, user4, user5, user6, user7")
        })
        .await;
    let joined = screen
        .iter()
        .filter(|l| l.contains(" joined #lobby"))
        .count();
    assert_eq!(joined, 4, "{}", screen.join("\n"));
    for i in 0..3 {
        assert!(screen
            .iter()
            .any(|l| l.ends_with(&format!("-- user{i} joined #lobby"))));
    }
}

/// Those back within a minute of their quit (a mass reconnect) are summed up as rejoining; a
/// newcomer in the same burst is still "joined".
#[tokio::test]
async fn a_burst_of_people_coming_back_is_summed_up_as_rejoining() {
    let server = ServerProcess::start(&[]);
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(TestClient::hello(server.addr, &format!("user{i}")).await.0);
    }
    let term = Terminal::open_wide(
        &server.addr.to_string(),
        &["NO_COLOR=1"],
        &["--no-bell"],
        200,
    );
    term.prompt().await;
    drop(clients);
    term.wait_for("every quit", |s| {
        (0..8).all(|i| s.iter().any(|l| l.contains(&format!("-- user{i} quit"))))
    })
    .await;
    let mut clients = Vec::new();
    for nick in (0..8).map(|i| format!("user{i}")).chain(["newbie".into()]) {
        clients.push(TestClient::hello(server.addr, &nick).await.0);
    }
    let screen = term
        .wait_for("both summaries", |s| {
            let row = |end: &str| s.iter().any(|l| l.ends_with(end));
            row("-- 5 more people rejoined #lobby: user3, user4, user5, user6, user7")
                && row("-- 1 more person joined #lobby: newbie")
        })
        .await;
    for i in 0..3 {
        assert!(
            screen
                .iter()
                .any(|l| l.ends_with(&format!("-- user{i} joined #lobby"))),
            "{}",
            screen.join("\n")
        );
    }
}

/// After our own connection was lost, those who were in the room and come back after the
/// reconnect (a server restart: everyone reconnects) are summed up as rejoining too.
#[tokio::test]
async fn after_our_reconnect_those_coming_back_are_summed_up_as_rejoining() {
    let server = ServerProcess::start(&[]);
    let relay = crate::activity::Relay::start(server.addr).await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(TestClient::hello(server.addr, &format!("user{i}")).await.0);
    }
    let (mut watcher, _) = TestClient::hello(server.addr, "watcher").await;
    let term = Terminal::open_wide(
        &relay.addr.to_string(),
        &["NO_COLOR=1"],
        &["--no-bell"],
        200,
    );
    term.prompt().await;
    relay.cut();
    term.wait_for_row("the loss", |l| l.contains("reconnect attempt 1 failed"))
        .await;
    // They leave while we are away: we never see their quits.
    drop(clients);
    for _ in 0..8 {
        watcher.skip_until("quit").await;
    }
    relay.mend();
    term.wait_for_row("the reconnect", |l| l.contains("-- reconnected to"))
        .await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(TestClient::hello(server.addr, &format!("user{i}")).await.0);
    }
    term.wait_for_row("the summary", |l| {
        l.ends_with("-- 5 more people rejoined #lobby: user3, user4, user5, user6, user7")
    })
    .await;
}

// ----- bug 13: the goodbye of a restarting server is told once -----

#[tokio::test]
async fn a_servers_goodbye_is_told_once() {
    let port = crate::client::free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = ServerProcess::start_raw(&["--listen", &listen, "--no-announce"]);
    let term = Terminal::open_wide(&listen, &["NO_COLOR=1"], &["--no-bell"], 200);
    term.prompt().await;
    server.sigterm();
    let screen = term
        .wait_for_row("the loss notice", |l| l.contains("reconnecting"))
        .await;
    let told: Vec<&String> = screen.iter().filter(|l| l.contains("goodbye")).collect();
    assert_eq!(told.len(), 1, "{}", screen.join("\n"));
    assert!(
        told[0].contains("-- connection lost: server said goodbye: "),
        "{told:?}"
    );
}
