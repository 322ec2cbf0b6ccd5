//! `lanchat`, the terminal client of lanchat.
//!
//! - [`away`]: automatic away after idle time, back on the next line, the summary of what
//!   arrived while away (pure).
//! - [`cli`]: the command line (clap) and [`run`], which picks a server and starts a session.
//! - [`session`]: the wiring: input lines to the link, replies and events through the model, what
//!   the model shows to the output.
//! - [`model`]: the chat as the user sees it (rooms, current room, members, what was shown);
//!   replies and events in, what to show out (pure).
//! - [`link`]: dial (through a `Dialer`), hello, requests, pacing, reconnect with back-off and
//!   restore.
//! - [`connection`]: the task that owns the socket (requests in, replies by `re`, events out).
//! - [`commands`]: input line to action to request (pure).
//! - [`config`]: the config file (`config.toml`): reading, checking, the commented default.
//! - [`joins`]: joins in bursts (a mass reconnect) summed up, rejoins apart from new joins (pure).
//! - [`render`]: what to show to display lines (pure).
//! - [`split`]: a message over the server's limit into messages that fit (pure).
//! - [`sanitize`]: the display filter every server string passes (escapes, bidi, line breaks).
//! - [`scripting`]: what `--json` adds for bots: history messages marked, failures counted.
//! - [`logs`]: chat logs per room and per DM nick, plain text with dates, rotated at a cap (off by
//!   default).
//! - [`notify`]: desktop notifications as OSC 777 / OSC 9 sequences (through tmux's passthrough
//!   inside tmux), server strings made inert.
//! - [`output`]: display lines to stdout, stderr or the REPL, as the mode calls for.
//! - [`echo`]: a message typed is erased once entered, so its echo shows it once.
//! - [`repl`]: the rustyline thread (prompt, completion, persistent input history).
//! - [`discovery`]: finding servers on the LAN over UDP discovery.
//! - [`tls`]: the TLS dialer around the TCP one, trusting exactly the pinned certificate.
//! - [`trust`]: the known-servers file (a pin per server, recorded on first contact).
//!
//! Dependencies run one way: `session` uses `link`, `model`, `output`, `joins`, `split`; `link`
//! uses `model` and `connection`; `model` uses `commands`, `sanitize` (for the prompt) and the
//! protocol crate, nothing else of the client; `render` and `discovery` use `sanitize`, a leaf;
//! `repl` uses `echo`; `tls` uses `link` (the `Dialer` it implements) and `trust`; `discovery`
//! uses `trust`.

pub mod away;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connection;
pub mod discovery;
pub mod echo;
pub mod joins;
pub mod link;
pub mod logs;
pub mod model;
pub mod notify;
pub mod output;
pub mod render;
pub mod repl;
pub mod sanitize;
pub mod scripting;
pub mod secrets;
pub mod session;
pub mod split;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod trust;

pub use cli::{run, Cli};

/// Why `lanchat` stops with an error, grouped by exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage, or nothing to connect to without a person to ask: exit status 2.
    #[error("{0}")]
    Usage(String),
    /// Anything else (cannot connect, refused by the server): exit status 1.
    #[error("{0}")]
    Fatal(String),
    /// The server's certificate does not match its pin (the explanation is several lines):
    /// exit status 2, like bad usage, since only the user can decide what to trust.
    #[error("{0}")]
    Untrusted(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Untrusted(_) => 2,
            Error::Fatal(_) => 1,
        }
    }
}
