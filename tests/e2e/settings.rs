//! The user's settings (issue 16): the config file (nick, autojoin, highlight words; a broken
//! file refused in one line; `--write-config`), chat logs, terminal notifications, away. Every
//! `lanchat` here gets its own `XDG_CONFIG_HOME` and `XDG_DATA_HOME`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use lanchat_tests::tmux::Tmux;
use lanchat_tests::{bin_path, ServerProcess, TempDir, TestClient, WAIT};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::{timeout, Instant};

/// A home of its own: `config/` (XDG_CONFIG_HOME) and `data/` (XDG_DATA_HOME).
struct Home {
    dir: TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = TempDir::new("settings");
        std::fs::create_dir_all(dir.path().join("config/lanchat")).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        Home { dir }
    }

    fn config_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("config")
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn config_file(&self) -> std::path::PathBuf {
        self.config_dir().join("lanchat/config.toml")
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.config_file(), text).unwrap();
    }

    /// `lanchat ARGS` in scripting mode with `stdin`, bounded by `WAIT`.
    async fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
        let mut child = self.spawn(args, env);
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.as_bytes()).await.unwrap();
        drop(pipe);
        timeout(WAIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("lanchat {args:?} did not finish"))
            .expect("lanchat output")
    }

    /// `lanchat ARGS` in scripting mode, stdin piped and left open.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
        Command::new(bin_path("lanchat"))
            .args(args)
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env("XDG_DATA_HOME", self.data_dir())
            .env_remove("LANCHAT_NICK")
            .env_remove("LANCHAT_CONFIG")
            .env_remove("LANCHAT_HOSTS")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start lanchat")
    }

    /// The interactive `lanchat ARGS` in a 100x30 tmux pane (no `--nick`: the config's).
    fn terminal(&self, args: &str, env: &str) -> Tmux {
        let tmux = Tmux::new();
        let command = format!(
            "env -u NO_COLOR -u LANCHAT_NICK -u LANCHAT_CONFIG XDG_CONFIG_HOME='{}' \
             XDG_DATA_HOME='{}' TERM=xterm {env} '{}' {args}",
            self.config_dir().display(),
            self.data_dir().display(),
            bin_path("lanchat").display(),
        );
        tmux.new_session(100, 30, &command);
        tmux
    }
}

/// Poll `pred` on the contents of `path` until it holds; panics with them after `WAIT`.
async fn wait_for_file(path: &Path, what: &str, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        let bytes = std::fs::read(path).unwrap_or_default();
        if pred(&bytes) {
            return bytes;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: {} holds {:?}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll bob's `who` of `room` until `nick` is in it.
async fn wait_member(bob: &mut TestClient, room: &str, nick: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let who = bob.request(json!({"type": "who", "room": room})).await;
        let here = who["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["nick"] == nick));
        if here {
            return;
        }
        assert!(Instant::now() < deadline, "{nick} never in #{room}: {who}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- the config file -----

#[tokio::test]
async fn the_config_sets_nick_autojoin_and_highlight_words() {
    let server = ServerProcess::start(&[]);
    let home = Home::new();
    home.write_config(
        "# mine\nnick = \"cfgann\"\nautojoin = [\"dev\"]\nhighlight = [\"deploy\"]\n\
         timestamp = \"%H:%M:%S\"\n",
    );
    let term = home.terminal(&server.addr.to_string(), "NO_COLOR=1");
    term.wait_for("the prompt in #dev", |s| {
        s.iter().any(|l| l.starts_with("#dev>"))
    })
    .await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    bob.request(json!({"type": "join", "room": "dev"})).await;
    wait_member(&mut bob, "dev", "cfgann").await;
    bob.request(json!({"type": "say", "room": "dev", "text": "the deploy is done"}))
        .await;
    bob.request(json!({"type": "say", "room": "dev", "text": "nothing to see"}))
        .await;
    let screen = term
        .wait_for("the plain line", |s| {
            s.iter().any(|l| l.ends_with("<bob> nothing to see"))
        })
        .await;
    // The highlight word marks the line as a mention would; the time has its seconds.
    let marked = screen
        .iter()
        .find(|l| l.contains(" >> ") && l.ends_with("<bob> the deploy is done"))
        .unwrap_or_else(|| panic!("no marked highlight:\n{}", screen.join("\n")));
    let time = marked.split(' ').next().unwrap();
    assert_eq!(time.len(), 8, "{marked}");
    assert_eq!(time.matches(':').count(), 2, "{marked}");
    assert!(screen
        .iter()
        .any(|l| l.ends_with("<bob> nothing to see") && !l.contains(">>")));
}

#[tokio::test]
async fn flags_and_variables_override_the_config() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let home = Home::new();
    home.write_config("nick = \"cfgann\"\nserver = \"nowhere.invalid:1\"\n");
    let addr = server.addr.to_string();
    let out = home
        .run(
            &[&addr, "--room", "lobby"],
            &[("LANCHAT_NICK", "envann")],
            "from the env\n",
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    let msg = bob.skip_until("message").await;
    assert_eq!(msg["from"], "envann", "{msg}");
    assert_eq!(msg["text"], "from the env");
}

#[tokio::test]
async fn a_broken_config_is_one_line_naming_the_file_and_line_and_exit_2() {
    let home = Home::new();
    home.write_config("nick = \"ann\"\n\nbell = \"loud\"\n");
    let out = home.run(&["127.0.0.1:1"], &[], "").await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let expected = format!("lanchat: {}:3: ", home.config_file().display());
    assert!(err.starts_with(&expected), "{err}");

    home.write_config("nick = \"ann\"\ncolour = true\n");
    let out = home.run(&["127.0.0.1:1"], &[], "").await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(":2: ") && err.contains("colour"), "{err}");
}

#[tokio::test]
async fn write_config_writes_a_commented_default_once() {
    let home = Home::new();
    let out = home.run(&["--write-config"], &[], "").await;
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(home.config_file()).unwrap();
    assert!(text.contains("# nick = ") && text.contains("# autojoin = "));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&*home.config_file().to_string_lossy()));
    // Never over an existing file.
    home.write_config("nick = \"mine\"\n");
    let out = home.run(&["--write-config"], &[], "").await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = std::fs::read_to_string(home.config_file()).unwrap();
    assert_eq!(text, "nick = \"mine\"\n");
}

// ----- chat logs -----

#[tokio::test]
async fn with_log_messages_and_dms_land_in_the_logs() {
    use std::os::unix::fs::PermissionsExt;
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let home = Home::new();
    let addr = server.addr.to_string();
    let mut ann = home.spawn(&[&addr, "--nick", "ann", "--room", "lobby", "--log"], &[]);
    let mut stdin = ann.stdin.take().unwrap();
    stdin.write_all(b"hello from ann\n").await.unwrap();
    let msg = bob.skip_until("message").await;
    assert_eq!(msg["text"], "hello from ann");
    let said = bob
        .request(json!({"type": "say", "room": "lobby", "text": "hi ann\nsecond"}))
        .await;
    assert_eq!(said["type"], "ok", "{said}");
    bob.request(json!({"type": "dm", "to": "ann", "text": "psst"}))
        .await;

    let dir = home.data_dir().join("lanchat/logs").join(&addr);
    let room = wait_for_file(&dir.join("lobby.log"), "the room log", |b| {
        String::from_utf8_lossy(b).contains("<bob> hi ann")
    })
    .await;
    let room = String::from_utf8(room).unwrap();
    let lines: Vec<&str> = room.lines().collect();
    assert!(lines[0].ends_with(" <ann> hello from ann"), "{room}");
    assert!(lines[1].ends_with(" <bob> hi ann"), "{room}");
    // The later line of a text marked as such (as on the screen; the display filter's unit
    // tests cover escapes, which the real server refuses).
    assert_eq!(lines[2].trim_start(), "| second", "{room}");
    // A date and a time on every line: YYYY-MM-DD HH:MM:SS.
    let stamp = &lines[0][..19];
    assert!(chrono_like(stamp), "{room}");
    let dm = wait_for_file(&dir.join("dm/bob.log"), "the DM log", |b| {
        String::from_utf8_lossy(b).contains("<bob> psst")
    })
    .await;
    assert!(chrono_like(&String::from_utf8_lossy(&dm)[..19]));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("lobby.log")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    drop(stdin);
    let status = timeout(WAIT, ann.wait()).await.unwrap().unwrap();
    assert!(status.success());

    // The next run shows the recent history again, and does not log it twice.
    let before = std::fs::read_to_string(dir.join("lobby.log")).unwrap();
    let out = home
        .run(
            &[&addr, "--nick", "ann", "--room", "lobby", "--log"],
            &[],
            "",
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("<bob> hi ann"), "{shown}");
    let after = std::fs::read_to_string(dir.join("lobby.log")).unwrap();
    assert_eq!(after, before);
}

/// `log_max_mib`: a log about to grow past it is renamed `.log.1` (replacing the one before) and
/// a new one started, so what is kept is the latest lines, in two files within the cap.
#[tokio::test]
async fn a_log_past_its_cap_is_rotated() {
    let server = ServerProcess::start(&[]);
    let home = Home::new();
    // 524 bytes: five entries of about 100 bytes a file.
    home.write_config("log = true\nlog_max_mib = 0.0005\n");
    let addr = server.addr.to_string();
    let mut ann = home.spawn(&[&addr, "--nick", "ann", "--room", "lobby"], &[]);
    let mut stdin = ann.stdin.take().unwrap();
    let said = |i: usize| format!("line {i:02} {}", "x".repeat(60));
    for i in 0..12 {
        stdin
            .write_all(format!("{}\n", said(i)).as_bytes())
            .await
            .unwrap();
    }
    let dir = home.data_dir().join("lanchat/logs").join(&addr);
    let current = wait_for_file(&dir.join("lobby.log"), "the last line logged", |b| {
        String::from_utf8_lossy(b).contains(&said(11))
    })
    .await;
    drop(stdin);
    let status = timeout(WAIT, ann.wait()).await.unwrap().unwrap();
    assert!(status.success());
    let current = String::from_utf8(current).unwrap();
    let older = std::fs::read_to_string(dir.join("lobby.log.1")).unwrap();
    assert!(!dir.join("lobby.log.2").exists());
    for (name, text) in [("lobby.log", &current), ("lobby.log.1", &older)] {
        assert!(text.len() <= 524, "{name} is {} bytes:\n{text}", text.len());
    }
    // The two files hold the latest lines, in order, the older ones in `.1`.
    let kept: Vec<String> = older
        .lines()
        .chain(current.lines())
        .map(|l| l[20..].to_owned())
        .collect();
    let first = 12 - kept.len();
    assert!(kept.len() >= 6, "{older}{current}");
    for (i, line) in kept.iter().enumerate() {
        assert_eq!(line, &format!("<ann> {}", said(first + i)));
    }
}

#[tokio::test]
async fn without_log_nothing_is_written() {
    let server = ServerProcess::start(&[]);
    let home = Home::new();
    let addr = server.addr.to_string();
    let out = home
        .run(
            &[&addr, "--nick", "ann", "--room", "lobby"],
            &[],
            "not logged\n",
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    assert!(!home.data_dir().join("lanchat/logs").exists());
}

/// `YYYY-MM-DD HH:MM:SS`.
fn chrono_like(s: &str) -> bool {
    s.len() == 19
        && s.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        })
}

// ----- notifications -----

#[tokio::test]
async fn notifications_for_a_mention_and_a_dm_and_none_for_plain_lines() {
    // Outside tmux (its `TMUX` emptied): the plain sequences.
    let text = notifications("TMUX=", "bob: psst\u{7}").await;
    assert!(!text.contains("\u{1b}P"), "{text:?}");
    let osc777: Vec<&str> = text.split("\u{1b}]777;notify;").skip(1).collect();
    let osc9: Vec<&str> = text.split("\u{1b}]9;").skip(1).collect();
    assert_eq!(osc777.len(), 2, "{text:?}");
    assert_eq!(osc9.len(), 2, "{text:?}");
    assert!(
        osc777[0].starts_with("bob in #lobby;ann: look at this\u{7}"),
        "{text:?}"
    );
    assert!(osc777[1].starts_with("bob;psst\u{7}"), "{text:?}");
    assert!(osc9[1].starts_with("bob: psst\u{7}"), "{text:?}");
    // Nothing for the plain lines, which reached the terminal all the same.
    assert!(!text.contains("chatting\u{7}"));
}

/// In tmux (`TMUX` set, as in every tmux pane) the sequences are wrapped for its passthrough:
/// `ESC P tmux;` then the sequences with each ESC doubled, then `ESC \`.
#[tokio::test]
async fn inside_tmux_notifications_are_wrapped_for_its_passthrough() {
    let text = notifications("", "bob: psst\u{7}\u{1b}\\").await;
    let wrapped: Vec<&str> = text
        .split("\u{1b}Ptmux;")
        .skip(1)
        .map(|w| &w[..w.find("\u{1b}\\").expect("the wrap's end")])
        .collect();
    assert_eq!(
        wrapped,
        [
            "\u{1b}\u{1b}]777;notify;bob in #lobby;ann: look at this\u{7}\
             \u{1b}\u{1b}]9;bob in #lobby: ann: look at this\u{7}",
            "\u{1b}\u{1b}]777;notify;bob;psst\u{7}\u{1b}\u{1b}]9;bob: psst\u{7}",
        ],
        "{text:?}"
    );
    // No sequence outside a wrap.
    assert_eq!(text.matches("]777;").count(), 2, "{text:?}");
}

/// With `notify = "both"`, in a pane with `env` (`NAME=value` words): bob says a plain line, a
/// mention, a plain line, then a DM; the bytes the client wrote from then on, up to `last`.
async fn notifications(env: &str, last: &str) -> String {
    let server = ServerProcess::start(&[]);
    let home = Home::new();
    home.write_config("nick = \"ann\"\nnotify = \"both\"\n");
    let term = home.terminal(&server.addr.to_string(), env);
    term.wait_for("the prompt", |s| s.iter().any(|l| l.starts_with("#lobby>")))
        .await;
    let piped = TempDir::new("pipe");
    let output = piped.path().join("output");
    let out = term.run(&[
        "pipe-pane",
        "-o",
        "-t",
        "chat",
        &format!("cat >> '{}'", output.display()),
    ]);
    assert!(out.status.success());
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    for text in ["just chatting", "ann: look at this", "still chatting"] {
        bob.request(json!({"type": "say", "room": "lobby", "text": text}))
            .await;
    }
    bob.request(json!({"type": "dm", "to": "ann", "text": "psst"}))
        .await;
    term.wait_for("the DM", |s| s.iter().any(|l| l.ends_with("*bob* psst")))
        .await;
    let bytes = wait_for_file(&output, "two notifications", |b| {
        String::from_utf8_lossy(b).contains(last)
    })
    .await;
    let screen = term.screen();
    assert!(screen.iter().any(|l| l.ends_with("<bob> still chatting")));
    String::from_utf8_lossy(&bytes).into_owned()
}

// ----- away -----

#[tokio::test]
async fn idle_goes_away_and_coming_back_sums_up_what_arrived() {
    let server = ServerProcess::start(&[]);
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let home = Home::new();
    // A twentieth of a minute: the test waits for the presence event, not for the time.
    home.write_config("nick = \"ann\"\naway_after = 0.05\n");
    let term = home.terminal(&server.addr.to_string(), "NO_COLOR=1");
    let presence = bob.skip_until("presence").await;
    assert_eq!(presence["nick"], "ann", "{presence}");
    assert_eq!(presence["status"], "away", "{presence}");
    assert_eq!(presence["text"], "idle for 1 min", "{presence}");

    // The server tells a sender that ann is away.
    let said = bob
        .request(json!({"type": "dm", "to": "ann", "text": "psst"}))
        .await;
    assert_eq!(said["away"], true, "{said}");
    assert_eq!(said["away_text"], "idle for 1 min", "{said}");
    for text in ["hello all", "ann: are you there?"] {
        bob.request(json!({"type": "say", "room": "lobby", "text": text}))
            .await;
    }
    term.wait_for("the mention", |s| {
        s.iter().any(|l| l.ends_with("<bob> ann: are you there?"))
    })
    .await;

    // The next typed line sets ann back, then says what arrived.
    term.send_literal("back now");
    term.send_key("Enter");
    let screen = term
        .wait_for("the summary", |s| {
            s.iter().any(|l| l.contains("while you were away:"))
        })
        .await;
    let summary = screen
        .iter()
        .find(|l| l.contains("while you were away:"))
        .unwrap();
    assert!(
        summary.ends_with("while you were away: 2 messages in 1 room, 1 mention, 1 DM"),
        "{summary}"
    );
    let presence = bob.skip_until("presence").await;
    assert_eq!(presence["status"], "online", "{presence}");
    let msg = bob.skip_until("message").await;
    assert_eq!(msg["text"], "back now");

    // A DM to someone away shows it.
    bob.request(json!({"type": "status", "status": "busy", "text": "on a call"}))
        .await;
    term.wait_for("bob busy", |s| s.iter().any(|l| l.contains("bob is busy")))
        .await;
    term.send_literal("/msg bob ping");
    term.send_key("Enter");
    term.wait_for("the away notice", |s| {
        s.iter().any(|l| l.ends_with("bob is away: on a call"))
    })
    .await;
}
