//! Issue 16, awareness of many rooms, in a real terminal (tmux): the activity line above the
//! prompt (unread counts, `!` for a mention) updated while the user is idle, Ctrl-N and Ctrl-P
//! switching rooms with the half-typed line kept (Alt-1..9 cannot be bound in rustyline 19), `/rooms` marking the joined rooms, and focus
//! mode. Every wait polls the screen under a deadline.

use std::net::SocketAddr;

use lanchat_tests::tmux::Tmux;
use lanchat_tests::{bin_path, ServerProcess, TempDir, TestClient};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// `lanchat` as ann in an 80x24 pane, with data and config directories of its own.
struct Terminal {
    tmux: Tmux,
    _data: TempDir,
    _config: TempDir,
}

impl Terminal {
    fn start(addr: &str) -> Terminal {
        let tmux = Tmux::new();
        let data = TempDir::new("activity-data");
        let config = TempDir::new("activity-config");
        let command = format!(
            "env XDG_DATA_HOME='{}' XDG_CONFIG_HOME='{}' TERM=xterm NO_COLOR=1 '{}' {addr} \
             --nick ann --no-bell",
            data.path().display(),
            config.path().display(),
            bin_path("lanchat").display(),
        );
        tmux.new_session(80, 24, &command);
        Terminal {
            tmux,
            _data: data,
            _config: config,
        }
    }

    fn type_line(&self, line: &str) {
        self.tmux.send_literal(line);
        self.tmux.send_key("Enter");
    }

    /// Wait until the prompt row starts with `prompt` and the row above it is `activity`.
    async fn wait_prompt(&self, activity: &str, prompt: &str) -> Vec<String> {
        self.tmux
            .wait_for(&format!("{activity:?} above the prompt {prompt:?}"), |s| {
                let rows = last_rows(s);
                rows.1.starts_with(prompt) && rows.0 == activity
            })
            .await
    }

    async fn wait_line(&self, text: &str) -> Vec<String> {
        self.tmux
            .wait_for(&format!("a line containing {text:?}"), |s| {
                s.iter().any(|l| l.contains(text))
            })
            .await
    }
}

/// The last two non-empty rows: the activity line and the prompt.
fn last_rows(screen: &[String]) -> (&str, &str) {
    let mut rows = screen.iter().rev().filter(|l| !l.is_empty());
    let prompt = rows.next().map_or("", |l| l.as_str());
    let above = rows.next().map_or("", |l| l.as_str());
    (above, prompt)
}

async fn say(bob: &mut TestClient, room: &str, text: &str) {
    let reply = bob
        .request(json!({"type":"say","room":room,"text":text}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
}

async fn join(bob: &mut TestClient, room: &str) {
    let reply = bob.request(json!({"type":"join","room":room})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
}

/// ann in lobby, dev and ops (lobby current), and bob in all three.
async fn three_rooms(server: &ServerProcess) -> (Terminal, TestClient) {
    let term = Terminal::start(&server.addr.to_string());
    term.tmux
        .wait_for("the prompt", |s| last_rows(s).1.starts_with("#lobby>"))
        .await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    for room in ["dev", "ops"] {
        join(&mut bob, room).await;
        term.type_line(&format!("/join {room}"));
        term.wait_line(&format!("joined #{room}")).await;
    }
    term.type_line("/1");
    term.wait_prompt("[1:lobby 2:dev 3:ops]", "#lobby>").await;
    (term, bob)
}

#[tokio::test]
async fn counts_and_a_mention_mark_appear_as_messages_arrive_and_ctrl_n_p_reset_them() {
    let server = ServerProcess::start(&[]);
    let (term, mut bob) = three_rooms(&server).await;

    // No key is pressed: the line changes as the messages arrive.
    for i in 1..=3 {
        say(&mut bob, "dev", &format!("dev chatter {i}")).await;
    }
    say(&mut bob, "ops", "Ann, the build is red").await;
    say(&mut bob, "lobby", "read where you are").await;
    term.wait_prompt("[1:lobby 2:dev(3) 3:ops(!)]", "#lobby>")
        .await;

    // Ctrl-N with a half-typed line: dev is read, the line is still there.
    term.tmux.send_literal("half typ");
    term.tmux.send_key("C-n");
    let screen = term
        .wait_prompt("[1:lobby 2:dev 3:ops(!)]", "#dev> half typ")
        .await;
    assert!(
        !screen.iter().any(|l| l.starts_with("#lobby> half typ")),
        "the line was left behind:\n{}",
        screen.join("\n")
    );
    // Ctrl-P twice: back to lobby, then around to ops, whose mark goes.
    term.tmux.send_key("C-p");
    term.wait_prompt("[1:lobby 2:dev 3:ops(!)]", "#lobby> half typ")
        .await;
    term.tmux.send_key("C-p");
    term.wait_prompt("[1:lobby 2:dev 3:ops]", "#ops> half typ")
        .await;
    // The kept line goes to the room it is now typed in.
    term.tmux.send_literal("ed");
    term.tmux.send_key("Enter");
    let said: Value = bob.skip_until("message").await;
    assert_eq!(
        (said["room"].as_str(), said["text"].as_str()),
        (Some("ops"), Some("half typed"))
    );
    term.wait_line("<ann> half typed").await;
}

#[tokio::test]
async fn rooms_marks_the_joined_ones() {
    let server = ServerProcess::start(&[]);
    let term = Terminal::start(&server.addr.to_string());
    term.tmux
        .wait_for("the prompt", |s| last_rows(s).1.starts_with("#lobby>"))
        .await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    join(&mut bob, "ops").await;
    term.type_line("/join dev");
    term.wait_line("joined #dev").await;
    term.type_line("/rooms");
    let screen = term.wait_line("#ops (1 member)").await;
    let listed = |name: &str| {
        screen
            .iter()
            .find(|l| l.contains(&format!("#{name} (")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(listed("lobby").contains("-- * #lobby ("), "{screen:#?}");
    assert!(listed("dev").contains("-- * #dev ("), "{screen:#?}");
    assert!(listed("ops").contains("-- #ops ("), "{screen:#?}");
}

#[tokio::test]
async fn focus_hides_another_rooms_chatter_but_not_a_mention_and_sums_it_up() {
    let server = ServerProcess::start(&[]);
    let (term, mut bob) = three_rooms(&server).await;
    term.type_line("/focus");
    term.wait_prompt("[focus 1:lobby 2:dev 3:ops]", "#lobby>")
        .await;

    say(&mut bob, "dev", "chatter nobody asked for").await;
    // Nothing is printed, yet the count shows without a key press.
    term.wait_prompt("[focus 1:lobby 2:dev(1) 3:ops]", "#lobby>")
        .await;
    say(&mut bob, "dev", "ann: a question for you").await;
    say(&mut bob, "lobby", "here is always shown").await;
    let screen = term.wait_line("<bob> here is always shown").await;
    assert!(screen.iter().any(|l| l.contains("ann: a question for you")));
    let screen = term
        .wait_prompt("[focus 1:lobby 2:dev(2!) 3:ops]", "#lobby>")
        .await;
    assert!(
        !screen
            .iter()
            .any(|l| l.contains("chatter nobody asked for")),
        "{}",
        screen.join("\n")
    );

    // Switching sums up what was hidden.
    term.tmux.send_key("C-n");
    term.wait_line("focus: 1 message not shown (#dev 1)").await;
    term.wait_prompt("[focus 1:lobby 2:dev 3:ops]", "#dev>")
        .await;
}

/// Messages caught up after a reconnect count as unread like live ones.
#[tokio::test]
async fn messages_caught_up_after_a_reconnect_count_as_unread() {
    let server = ServerProcess::start(&[]);
    let relay = Relay::start(server.addr).await;
    let term = Terminal::start(&relay.addr.to_string());
    term.tmux
        .wait_for("the prompt", |s| last_rows(s).1.starts_with("#lobby>"))
        .await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    join(&mut bob, "dev").await;
    term.type_line("/join dev");
    term.wait_line("joined #dev").await;
    term.type_line("/1");
    term.wait_prompt("[1:lobby 2:dev]", "#lobby>").await;
    say(&mut bob, "dev", "said before the loss").await;
    term.wait_prompt("[1:lobby 2:dev(1)]", "#lobby>").await;

    // While the relay is cut, the client can only learn what bob says by catching up.
    relay.cut();
    term.wait_line("reconnect attempt 1 failed").await;
    for text in ["missed one", "missed two"] {
        say(&mut bob, "dev", text).await;
    }
    relay.mend();
    term.wait_line("missed in #dev while disconnected (2 messages)")
        .await;
    term.wait_prompt("[1:lobby 2:dev(3)]", "#lobby>").await;
}

/// A TCP relay to the server that a test can cut: the connection through it is closed, and
/// those that come while it is cut are dropped at once, until it is mended.
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    open: watch::Sender<bool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub(crate) async fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, is_open) = watch::channel(true);
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*is_open.borrow() {
                    continue;
                }
                let mut is_open = is_open.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = is_open.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Relay {
            addr,
            open,
            accepting,
        }
    }

    pub(crate) fn cut(&self) {
        self.open.send_replace(false);
    }

    pub(crate) fn mend(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Alt and a digit switch to the room at that position, as in irssi, keeping the half-typed
/// line; a digit with no room there does nothing to the rooms.
#[tokio::test]
async fn alt_and_a_digit_switches_to_that_room() {
    let server = ServerProcess::start(&[]);
    let (term, mut bob) = three_rooms(&server).await;
    say(&mut bob, "ops", "ops news").await;
    term.wait_prompt("[1:lobby 2:dev 3:ops(1)]", "#lobby>")
        .await;

    term.tmux.send_literal("half");
    term.tmux.send_key("M-3");
    term.wait_prompt("[1:lobby 2:dev 3:ops]", "#ops> half")
        .await;
    term.tmux.send_key("M-2");
    term.wait_prompt("[1:lobby 2:dev 3:ops]", "#dev> half")
        .await;
    // No room 7: still dev.
    term.tmux.send_key("M-7");
    term.tmux.send_literal(" way");
    term.wait_prompt("[1:lobby 2:dev 3:ops]", "#dev> half way")
        .await;
    term.tmux.send_key("Enter");
    let said: Value = bob.skip_until("message").await;
    assert_eq!(
        (said["room"].as_str(), said["text"].as_str()),
        (Some("dev"), Some("half way"))
    );
}
