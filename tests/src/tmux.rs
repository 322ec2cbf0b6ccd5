//! A private tmux server for driving the interactive client in a real terminal: its own socket,
//! one session called `chat`, killed on drop. Every wait polls the screen under [`WAIT`].

use std::time::Duration;

use tokio::time::Instant;

use crate::WAIT;

/// A private tmux server (its own socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new() -> Tmux {
        match std::process::Command::new("tmux").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            _ => panic!("install tmux: apt-get install -y tmux"),
        }
        Tmux {
            socket: format!("lanchat-e2e-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Start the session `chat`, `columns` x `rows`, running `command` (a shell command line).
    pub fn new_session(&self, columns: u16, rows: u16, command: &str) {
        let (x, y) = (columns.to_string(), rows.to_string());
        let out = self.run(&[
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            &x,
            "-y",
            &y,
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn send_literal(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "chat", "-l", text]);
        assert!(
            out.status.success(),
            "send-keys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn send_key(&self, key: &str) {
        let out = self.run(&["send-keys", "-t", "chat", key]);
        assert!(
            out.status.success(),
            "send-keys {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The visible screen, one string per row, trailing blanks trimmed.
    pub fn screen(&self) -> Vec<String> {
        let out = self.run(&["capture-pane", "-p", "-t", "chat"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect()
    }

    /// Poll the screen until `pred` holds; panics with the screen after `WAIT`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("screen never showed {what}:\n{}", screen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "chat"]).status.success()
    }
}

impl Default for Tmux {
    fn default() -> Self {
        Tmux::new()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
