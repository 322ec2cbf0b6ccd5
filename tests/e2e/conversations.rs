//! Issue 16's "DM conversations" and "Bots" against the real server: `/query` and `/reply` in the
//! interactive client (tmux), nick and room completion, and what `--json` promises a bot (a
//! failed command makes the exit status 1; a naive filter for live messages never sees history).
//! The other side of every exchange is a raw protocol client, so the tests see what arrived.

use std::process::Stdio;

use lanchat_tests::tmux::Tmux;
use lanchat_tests::{bin_path, ServerProcess, TempDir, TestClient, WAIT};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// `lanchat` as ann in a tmux pane, with its own data and config directories.
struct Terminal {
    tmux: Tmux,
    _data: TempDir,
}

impl Terminal {
    fn open(addr: &str, extra: &[&str]) -> Terminal {
        let tmux = Tmux::new();
        let (data, config) = (TempDir::new("conv-data"), TempDir::new("conv-config"));
        let command = format!(
            "env NO_COLOR=1 XDG_DATA_HOME='{}' XDG_CONFIG_HOME='{}' TERM=xterm '{}' {addr} \
             --nick ann --no-bell {}",
            data.path().display(),
            config.path().display(),
            bin_path("lanchat").display(),
            extra.join(" ")
        );
        tmux.new_session(100, 30, &command);
        Terminal { tmux, _data: data }
    }

    /// Type a line and press Enter.
    fn enter(&self, line: &str) {
        self.tmux.send_literal(line);
        self.tmux.send_key("Enter");
    }

    /// Wait until the prompt (the last non-empty row) starts with `prompt`.
    async fn prompt(&self, prompt: &str) {
        self.tmux
            .wait_for(&format!("the prompt {prompt}"), |s| {
                last_row(s).starts_with(prompt)
            })
            .await;
    }

    async fn row(&self, what: &str, pred: impl Fn(&str) -> bool) {
        self.tmux
            .wait_for(what, |s| s.iter().any(|l| pred(l)))
            .await;
    }
}

fn last_row(screen: &[String]) -> &str {
    screen
        .iter()
        .rev()
        .find(|l| !l.is_empty())
        .map_or("", |l| l.as_str())
}

#[tokio::test]
async fn a_query_exchange_both_ways_follows_a_nick_change_and_closes() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let ann = Terminal::open(&server.addr.to_string(), &[]);
    ann.prompt("#lobby>").await;

    ann.enter("/query bob");
    ann.prompt("@bob>").await;
    ann.enter("just between us");
    let dm = bob.skip_until("direct").await;
    assert_eq!(
        (dm["from"].as_str(), dm["text"].as_str()),
        (Some("ann"), Some("just between us"))
    );
    ann.row("the sent DM", |l| l.ends_with("-> *bob* just between us"))
        .await;

    bob.request(json!({"type": "dm", "to": "ann", "text": "sure thing"}))
        .await;
    ann.row("bob's DM", |l| {
        l.ends_with("*bob* sure thing") && !l.contains("->")
    })
    .await;

    // bob becomes robert: the conversation follows him, even for a line typed at the prompt that
    // still says @bob (a prompt being read under is redrawn after the line).
    bob.request(json!({"type": "nick", "nick": "robert"})).await;
    ann.row("the nick change", |l| {
        l.ends_with("bob is now known as robert")
    })
    .await;
    ann.enter("still there?");
    let dm = bob.skip_until("direct").await;
    assert_eq!(
        (dm["to"].as_str(), dm["text"].as_str()),
        (Some("robert"), Some("still there?"))
    );
    ann.prompt("@robert>").await;

    // Closed: plain text goes to the room again.
    ann.enter("/close");
    ann.prompt("#lobby>").await;
    ann.enter("back to everyone");
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["room"].as_str(), m["text"].as_str()),
        (Some("lobby"), Some("back to everyone"))
    );

    // `/leave` in a conversation closes it and leaves no room.
    ann.enter("/query robert");
    ann.prompt("@robert>").await;
    ann.enter("/leave");
    ann.prompt("#lobby>").await;
    ann.enter("/who");
    ann.row("lobby still joined", |l| {
        l.contains("#lobby") && l.contains("robert")
    })
    .await;
}

#[tokio::test]
async fn reply_answers_the_last_dm_sender_and_alone_opens_the_conversation() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let (mut cat, _) = TestClient::hello(server.addr, "cat").await;
    let ann = Terminal::open(&server.addr.to_string(), &[]);
    ann.prompt("#lobby>").await;

    ann.enter("/reply too early");
    ann.row("the hint", |l| {
        l.contains("no direct message to reply to yet")
    })
    .await;

    cat.request(json!({"type": "dm", "to": "ann", "text": "first"}))
        .await;
    bob.request(json!({"type": "dm", "to": "ann", "text": "lunch?"}))
        .await;
    ann.row("bob's DM", |l| l.ends_with("*bob* lunch?")).await;
    ann.enter("/reply yes, at noon");
    let dm = bob.skip_until("direct").await;
    assert_eq!(
        (dm["from"].as_str(), dm["text"].as_str()),
        (Some("ann"), Some("yes, at noon"))
    );
    ann.prompt("#lobby>").await;

    ann.enter("/reply");
    ann.prompt("@bob>").await;
    ann.enter("see you");
    let dm = bob.skip_until("direct").await;
    assert_eq!(dm["text"], "see you");
    cat.sync().await;
    let to_cat = cat.drain_pending();
    assert!(!to_cat.iter().any(|f| f["type"] == "direct"), "{to_cat:?}");
}

#[tokio::test]
async fn tab_completes_a_nick_from_another_room_and_a_room_from_the_server_list() {
    let server = ServerProcess::start(&[]);
    let (mut cat, _) = TestClient::hello(server.addr, "cat").await;
    cat.request(json!({"type": "leave", "room": "lobby"})).await;
    cat.request(json!({"type": "join", "room": "dev"})).await;
    // A room ann has never joined: only the server's room list names it.
    let (mut dan, _) = TestClient::hello(server.addr, "dan").await;
    dan.request(json!({"type": "join", "room": "rustaceans"}))
        .await;

    let ann = Terminal::open(&server.addr.to_string(), &["--room", "dev"]);
    ann.prompt("#dev>").await;
    ann.enter("/switch lobby");
    ann.prompt("#lobby>").await;

    // cat shares #dev with ann, not #lobby, the current room.
    ann.tmux.send_literal("/msg ca");
    ann.tmux.send_key("Tab");
    ann.prompt("#lobby> /msg cat").await;
    ann.enter(" completed");
    let dm = cat.skip_until("direct").await;
    assert_eq!(
        (dm["from"].as_str(), dm["text"].as_str()),
        (Some("ann"), Some("completed"))
    );

    ann.tmux.send_literal("/join rusta");
    ann.tmux.send_key("Tab");
    ann.prompt("#lobby> /join rustaceans").await;
    ann.tmux.send_key("Enter");
    ann.prompt("#rustaceans>").await;
    loop {
        let join = dan.skip_until("join").await;
        if join["room"] == "rustaceans" {
            assert_eq!(join["nick"], "ann");
            break;
        }
    }
}

/// The room list for completion is fetched again on `/rooms` and after each join and leave: a
/// room made after the start completes once one of them happened.
#[tokio::test]
async fn rooms_made_after_the_start_complete_after_rooms_or_a_join() {
    let server = ServerProcess::start(&[]);
    let ann = Terminal::open(&server.addr.to_string(), &[]);
    ann.prompt("#lobby>").await;
    let (mut dan, _) = TestClient::hello(server.addr, "dan").await;
    let joined = dan.request(json!({"type": "join", "room": "golang"})).await;
    assert_eq!(joined["type"], "ok", "{joined}");
    ann.enter("/rooms");
    ann.row("the room list", |l| l.contains("#golang")).await;
    ann.tmux.send_literal("/join gola");
    ann.tmux.send_key("Tab");
    ann.prompt("#lobby> /join golang").await;
    ann.tmux.send_key("C-u");
    ann.tmux
        .wait_for("an empty prompt", |s| last_row(s) == "#lobby>")
        .await;

    let joined = dan
        .request(json!({"type": "join", "room": "haskell"}))
        .await;
    assert_eq!(joined["type"], "ok", "{joined}");
    ann.enter("/join dev");
    ann.prompt("#dev>").await;
    ann.tmux.send_literal("/join hask");
    ann.tmux.send_key("Tab");
    ann.prompt("#dev> /join haskell").await;
}

/// `lanchat --json` reading stdin from a pipe: stdout lines as they come.
struct Bot {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    _data: TempDir,
}

impl Bot {
    fn start(addr: &str, nick: &str) -> Bot {
        let data = TempDir::new("bot-data");
        let mut command = crate::client::lanchat_in(data.path());
        command
            .args([addr, "--nick", nick, "--json"])
            .stderr(Stdio::inherit());
        let (mut child, lines) = crate::client::spawn_reading(&mut command);
        Bot {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            _data: data,
        }
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Read stdout until a line matches `pred`.
    async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let found = pred(&line);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                _ => panic!("no {what}; stdout:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Close stdin; the exit status and every stdout line.
    async fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let status = timeout(WAIT, self.child.wait())
            .await
            .expect("the bot exits after its input")
            .expect("wait");
        while let Ok(Some(line)) = timeout(WAIT, self.lines.recv()).await {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}

#[tokio::test]
async fn json_a_failed_command_gives_exit_status_1_after_the_whole_input() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let addr = server.addr.to_string();

    let mut bot = Bot::start(&addr, "bot");
    bot.expect("the welcome", |l| l.contains(r#""type":"welcome""#))
        .await;
    bot.type_line("/msg nobody hello?").await;
    bot.type_line("said after the failure").await;
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("bot"), Some("said after the failure"))
    );
    let (status, out) = bot.finish().await;
    assert_eq!(status.code(), Some(1), "{out:?}");
    assert!(out.iter().any(|l| l.contains(r#""code":"no_such_nick""#)));
    assert!(
        out.last().unwrap().contains(r#""type":"bye""#),
        "ran to the end"
    );

    // The same bot with nothing failing exits 0.
    let mut bot = Bot::start(&addr, "bot");
    bot.expect("the welcome", |l| l.contains(r#""type":"welcome""#))
        .await;
    bot.type_line("/msg bob all good").await;
    bot.expect("the dm reply", |l| l.contains(r#""cmd":"dm""#))
        .await;
    let (status, out) = bot.finish().await;
    assert_eq!(status.code(), Some(0), "{out:?}");
}

#[tokio::test]
async fn json_a_naive_filter_for_live_messages_never_sees_history() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    bob.request(json!({"type": "say", "room": "lobby", "text": "old news"}))
        .await;

    let mut bot = Bot::start(&server.addr.to_string(), "bot");
    // The recent history fetched on start holds the old message.
    bot.expect("the history reply", |l| l.contains("old news"))
        .await;
    bob.request(json!({"type": "say", "room": "lobby", "text": "fresh news"}))
        .await;
    bot.expect("the live message", |l| l.contains("fresh news"))
        .await;
    // Asked for explicitly: both again, as history.
    bot.type_line("/history").await;
    bot.expect("the /history reply", |l| {
        l.contains(r#""cmd":"history""#) && l.contains("fresh news")
    })
    .await;
    let (status, out) = bot.finish().await;
    assert!(status.success());

    // What `grep '"type":"message"'` keeps: the one live message.
    let live: Vec<&String> = out
        .iter()
        .filter(|l| l.contains(r#""type":"message""#))
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(live[0].contains("fresh news"));
    // The history is all there, marked, inside its replies.
    let histories: Vec<serde_json::Value> = out
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|f| f["cmd"] == "history")
        .collect();
    assert_eq!(histories.len(), 2);
    for h in &histories {
        for m in h["messages"].as_array().unwrap() {
            assert_eq!(m["type"], "history_message", "{h}");
        }
    }
    assert_eq!(histories[1]["messages"].as_array().unwrap().len(), 2);
}
