//! Issue 16: what the user types in the interactive client, in a real terminal (tmux), checked
//! where it matters: what reaches the room (a second client over a socket) and what the screen
//! shows. Every wait polls under a deadline.

use lanchat_tests::tmux::Tmux;
use lanchat_tests::{bin_path, ServerProcess, TempDir, TestClient};
use serde_json::{json, Value};

use crate::client::free_port;

/// `lanchat` running in a tmux pane of its own, with its own `XDG_DATA_HOME`.
struct Terminal {
    tmux: Tmux,
    _data: TempDir,
}

impl Terminal {
    /// Start `lanchat ARGS` in an 80x24 pane, with `env` (`NAME=value`) added.
    fn start(args: &[&str], env: &[&str]) -> Terminal {
        let tmux = Tmux::new();
        let data = TempDir::new("typing");
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let command = format!(
            "env XDG_DATA_HOME='{}' XDG_CONFIG_HOME='{}' TERM=xterm NO_COLOR=1 {} '{}' {} --no-bell",
            data.path().display(),
            data.path().display(),
            env.join(" "),
            bin_path("lanchat").display(),
            quoted.join(" "),
        );
        tmux.new_session(80, 24, &command);
        Terminal { tmux, _data: data }
    }

    async fn wait_prompt(&self, prompt: &str) {
        self.tmux
            .wait_for(&format!("the prompt {prompt:?}"), |s| {
                prompt_row(s).starts_with(prompt)
            })
            .await;
    }

    async fn wait_line(&self, text: &str) -> Vec<String> {
        self.tmux
            .wait_for(&format!("a line containing {text:?}"), |s| {
                s.iter().any(|l| l.contains(text))
            })
            .await
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

/// The next `n` messages `bob` receives, as (room, from, text).
async fn messages(bob: &mut TestClient, n: usize) -> Vec<(String, String, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m: Value = bob.skip_until("message").await;
        got.push((
            m["room"].as_str().unwrap_or("").to_owned(),
            m["from"].as_str().unwrap_or("").to_owned(),
            m["text"].as_str().unwrap_or("").to_owned(),
        ));
    }
    got
}

fn said(room: &str, texts: &[String]) -> Vec<(String, String, String)> {
    texts
        .iter()
        .map(|t| (room.to_owned(), "ann".to_owned(), t.clone()))
        .collect()
}

#[tokio::test]
async fn a_paced_burst_of_15_typed_ahead_lines_arrives_complete_and_in_order() {
    let server = ServerProcess::start(&["--rate-burst", "10", "--rate-per-sec", "5"]);
    let addr = server.addr.to_string();
    let term = Terminal::start(&[&addr, "--nick", "ann"], &[]);
    term.wait_prompt("#lobby>").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    term.wait_line("bob joined #lobby").await;

    // One send-keys: all fifteen lines reach the terminal at once, faster than anyone types.
    let texts: Vec<String> = (1..=15).map(|i| format!("burst line {i}")).collect();
    let mut keys = vec!["send-keys", "-t", "chat"];
    for t in &texts {
        keys.push(t);
        keys.push("Enter");
    }
    let out = term.tmux.run(&keys);
    assert!(out.status.success());
    assert_eq!(messages(&mut bob, 15).await, said("lobby", &texts));
    term.wait_line("<ann> burst line 15").await;
}

#[tokio::test]
async fn an_unbracketed_three_line_paste_sends_every_line() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let term = Terminal::start(&[&addr, "--nick", "ann"], &[]);
    term.wait_prompt("#lobby>").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    term.wait_line("bob joined #lobby").await;

    // paste-buffer without -p: no bracketed-paste markers, each newline an Enter.
    let out = term
        .tmux
        .run(&["set-buffer", "pasted one\npasted two\npasted three\n"]);
    assert!(out.status.success());
    let out = term.tmux.run(&["paste-buffer", "-t", "chat"]);
    assert!(out.status.success());
    let texts: Vec<String> = ["pasted one", "pasted two", "pasted three"]
        .map(String::from)
        .to_vec();
    assert_eq!(messages(&mut bob, 3).await, said("lobby", &texts));
}

/// ann's terminal on a server that stops: `line` is typed while disconnected, then the server
/// comes back on the same port (the client reconnects by itself).
async fn typed_while_offline(line: &str) -> (Terminal, ServerProcess) {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--listen", listen.as_str(), "--no-announce", "--no-tls"];
    let mut server = ServerProcess::start_raw(&args);
    let term = Terminal::start(&[&listen, "--nick", "ann", "--no-tls"], &[]);
    term.wait_prompt("#lobby>").await;
    server.kill();
    term.wait_line("connection lost").await;
    term.tmux.send_literal(line);
    term.tmux.send_key("Enter");
    term.wait_line("this will be sent once reconnected").await;
    (term, ServerProcess::start_raw(&args))
}

#[tokio::test]
async fn the_prompt_names_the_room_a_line_goes_to_after_a_join_done_on_reconnecting() {
    let (term, server) = typed_while_offline("/join ops").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    bob.request(json!({"type":"join","room":"ops"})).await;
    term.wait_line("joined #ops").await;

    // Whatever the prompt names now is where the next line goes.
    let screen = term
        .tmux
        .wait_for("a prompt", |s| prompt_row(s).starts_with('#'))
        .await;
    let shown = prompt_row(&screen).to_owned();
    let room = shown[1..].split('>').next().unwrap().to_owned();
    term.tmux.send_literal("where does this go");
    term.tmux.send_key("Enter");
    let got = messages(&mut bob, 1).await;
    assert_eq!(
        got,
        said(&room, &["where does this go".to_owned()]),
        "the prompt said {shown:?}"
    );
    // And once that line is done, the prompt names the room the user joined.
    term.wait_prompt("#ops>").await;
    term.tmux.send_literal("now in ops");
    term.tmux.send_key("Enter");
    assert_eq!(
        messages(&mut bob, 1).await,
        said("ops", &["now in ops".to_owned()])
    );
}

#[tokio::test]
async fn a_password_is_asked_for_on_the_terminal_without_echo() {
    let server = ServerProcess::start(&["--password", "open-sesame"]);
    let addr = server.addr.to_string();
    let term = Terminal::start(&[&addr, "--nick", "ann"], &[]);
    term.wait_line("password for").await;
    // A wrong one is refused and asked again.
    term.tmux.send_literal("not-this-one");
    term.tmux.send_key("Enter");
    term.wait_line("auth_failed").await;
    term.tmux
        .wait_for("the second question", |s| {
            s.iter().filter(|l| l.contains("password for")).count() == 2
        })
        .await;
    term.tmux.send_literal("open-sesame");
    term.tmux.send_key("Enter");
    term.wait_prompt("#lobby>").await;
    let screen = term.tmux.screen();
    assert!(
        !screen
            .iter()
            .any(|l| l.contains("sesame") || l.contains("not-this")),
        "a password was echoed:\n{}",
        screen.join("\n")
    );
    let mut bob = TestClient::connect(server.addr).await;
    let welcome = bob
        .request(json!({"type":"hello","nick":"bob","password":"open-sesame"}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    term.wait_line("bob joined #lobby").await;
    term.tmux.send_literal("let in");
    term.tmux.send_key("Enter");
    assert_eq!(
        messages(&mut bob, 1).await,
        said("lobby", &["let in".to_owned()])
    );
}

#[tokio::test]
async fn lanchat_password_gives_the_password_and_its_absence_is_explained() {
    let server = ServerProcess::start(&["--password", "open-sesame"]);
    let addr = server.addr.to_string();
    let run = |password: Option<&str>| {
        let data = TempDir::new("password");
        let mut cmd = tokio::process::Command::new(bin_path("lanchat"));
        cmd.args([addr.as_str(), "--nick", "ci"])
            .env("XDG_DATA_HOME", data.path())
            .env("XDG_CONFIG_HOME", data.path())
            .env("NO_COLOR", "1")
            .env_remove("LANCHAT_PASSWORD")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(p) = password {
            cmd.env("LANCHAT_PASSWORD", p);
        }
        async move {
            let out = tokio::time::timeout(lanchat_tests::WAIT, cmd.output())
                .await
                .expect("lanchat finished")
                .expect("lanchat ran");
            drop(data);
            out
        }
    };
    let out = run(Some("open-sesame")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth_failed")
            && err.contains("--password-file")
            && err.contains("LANCHAT_PASSWORD"),
        "{err}"
    );
}

/// `ann`'s nick held by another connection, then `lanchat --nick ann` (given `ann_2`) and an
/// observer, all in the lobby.
async fn nick_held_elsewhere(server: &ServerProcess) -> (TestClient, Terminal, TestClient) {
    let (ghost, _) = TestClient::hello(server.addr, "ann").await;
    let addr = server.addr.to_string();
    let term = Terminal::start(&[&addr, "--nick", "ann"], &[]);
    term.wait_line("the nick ann is taken; you are ann_2").await;
    term.wait_prompt("#lobby>").await;
    let (bob, _) = TestClient::hello(server.addr, "bob").await;
    term.wait_line("bob joined #lobby").await;
    (ghost, term, bob)
}

#[tokio::test]
async fn the_nick_is_taken_back_when_its_holder_quits() {
    let server = ServerProcess::start(&[]);
    let (mut ghost, term, mut bob) = nick_held_elsewhere(&server).await;
    ghost.send(json!({"type":"quit"})).await;
    let n = bob.skip_until("nick").await;
    assert_eq!(
        (n["old"].as_str(), n["new"].as_str()),
        (Some("ann_2"), Some("ann"))
    );
    term.wait_line("you are now known as ann").await;
    term.tmux.send_literal("me again");
    term.tmux.send_key("Enter");
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("ann"), Some("me again"))
    );
}

#[tokio::test]
async fn the_nick_is_tried_again_when_no_event_says_it_is_free() {
    let server = ServerProcess::start(&[]);
    let (mut ghost, term, mut bob) = nick_held_elsewhere(&server).await;
    // Out of every room ann_2 shares before quitting: no event reaches lanchat.
    ghost.request(json!({"type":"leave","room":"lobby"})).await;
    bob.skip_until("leave").await;
    ghost.send(json!({"type":"quit"})).await;
    let n = bob.skip_until("nick").await;
    assert_eq!(
        (n["old"].as_str(), n["new"].as_str()),
        (Some("ann_2"), Some("ann"))
    );
    term.wait_line("you are now known as ann").await;
}

#[tokio::test]
async fn a_dm_typed_offline_waits_for_its_recipient_to_come_back() {
    let (term, server) = typed_while_offline("/msg bob are you back").await;
    // ann is back first: bob is not there yet.
    term.wait_line("bob is not back yet").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let d = bob.skip_until("direct").await;
    assert_eq!(
        (d["from"].as_str(), d["text"].as_str()),
        (Some("ann"), Some("are you back"))
    );
}

#[tokio::test]
async fn a_refused_dm_is_shown_with_its_text() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let term = Terminal::start(&[&addr, "--nick", "ann"], &[]);
    term.wait_prompt("#lobby>").await;
    term.tmux.send_literal("/msg nobody words kept");
    term.tmux.send_key("Enter");
    // The notice, wrapped or not, repeats the text (the typed line above it does too).
    term.tmux
        .wait_for("the notice with the text", |s| {
            let Some(at) = s.iter().position(|l| l.contains("not delivered to nobody")) else {
                return false;
            };
            // Rows are trimmed, so a space at a wrap is lost: compare without spaces.
            let text: String = s[at..].concat().split_whitespace().collect();
            text.contains("itsaid:wordskept")
        })
        .await;
}

/// Bug 5: on SIGWINCH rustyline 19 cleared the rows the input took at the old width, but a
/// terminal that reflows (tmux, VTE, kitty) has already laid it out at the new one, so widening
/// erased the rows above. Fixed in the vendored rustyline (vendor/README.md), which recomputes the
/// layout at the new width before redrawing.
#[tokio::test]
async fn resizing_with_a_wrapped_half_line_keeps_the_message_above_it() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let term = Terminal::start(&[&addr, "--nick", "ann"], &[]);
    term.wait_prompt("#lobby>").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    term.wait_line("bob joined #lobby").await;
    // Two rows of an 80-column pane.
    let half: String = (0..12).map(|i| format!("word{i:02} ")).collect::<String>() + "and more";
    term.tmux.send_literal(&half);
    term.wait_line("word11").await;
    bob.request(json!({"type":"say","room":"lobby","text":"the message just before"}))
        .await;
    term.wait_line("<bob> the message just before").await;
    for (marks, width) in (1..).zip(["120", "50", "80", "100"]) {
        let out = term
            .tmux
            .run(&["resize-window", "-t", "chat", "-x", width, "-y", "24"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A key typed after the resize is read after the SIGWINCH it caused: once it shows, the
        // input has been drawn again at the new width.
        term.tmux.send_literal("!");
        let screen = term
            .tmux
            .wait_for(&format!("the line redrawn at width {width}"), |s| {
                let text: String = s.concat().split_whitespace().collect();
                text.contains(&format!("andmore{}", "!".repeat(marks)))
            })
            .await;
        let history = term
            .tmux
            .run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "chat"]);
        let all = String::from_utf8_lossy(&history.stdout).to_string();
        assert!(
            all.contains("<bob> the message just before"),
            "width {width}: the message is gone:\n{all}\nscreen:\n{}",
            screen.join("\n")
        );
    }
    term.tmux.send_key("Enter");
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"].as_str(), Some(format!("{half}!!!!").as_str()));
}

#[tokio::test]
async fn a_server_whose_beacon_says_auth_gets_the_password_asked_for_before_the_hello() {
    let up = lanchat_tests::free_udp_port();
    let port = up.to_string();
    let server = ServerProcess::start_raw(&[
        "--listen",
        "127.0.0.1:0",
        "--announce-port",
        &port,
        "--name",
        "e2e-locked",
        "--password",
        "open-sesame",
    ]);
    let mut bob = TestClient::connect(server.addr).await;
    let welcome = bob
        .request(json!({"type":"hello","nick":"bob","password":"open-sesame"}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let term = Terminal::start(
        &[
            "--discover-port",
            &port,
            "--interface",
            "lo",
            "--nick",
            "ann",
        ],
        &[],
    );
    // Asked at once: no refused hello first.
    term.wait_line("password for e2e-locked").await;
    let screen = term.tmux.screen();
    assert!(
        !screen.iter().any(|l| l.contains("auth_failed")),
        "{}",
        screen.join("\n")
    );
    term.tmux.send_literal("open-sesame");
    term.tmux.send_key("Enter");
    term.wait_prompt("#lobby>").await;
    term.tmux.send_literal("found and let in");
    term.tmux.send_key("Enter");
    assert_eq!(
        messages(&mut bob, 1).await,
        said("lobby", &["found and let in".to_owned()])
    );
    let screen = term.tmux.screen();
    assert!(
        !screen.iter().any(|l| l.contains("sesame")),
        "{}",
        screen.join("\n")
    );
}

#[tokio::test]
async fn a_password_asked_for_over_plain_text_comes_with_a_warning() {
    let server = ServerProcess::start(&["--no-tls", "--password", "open-sesame"]);
    let addr = server.addr.to_string();
    let term = Terminal::start(&[&addr, "--nick", "ann", "--no-tls"], &[]);
    let screen = term.wait_line("password for").await;
    let warned = screen
        .iter()
        .position(|l| l.contains("the password travels in clear text"));
    let asked = screen.iter().position(|l| l.contains("password for"));
    assert!(
        warned.is_some() && warned < asked,
        "no warning before the question:\n{}",
        screen.join("\n")
    );
    term.tmux.send_literal("open-sesame");
    term.tmux.send_key("Enter");
    term.wait_prompt("#lobby>").await;
}
