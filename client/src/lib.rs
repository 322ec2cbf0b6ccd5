//! `lanchat`, the terminal client of lanchat.
//!
//! - [`cli`]: the command line (clap) and [`run`], which picks a server and starts a session.
//! - [`connection`]: the task that owns the socket (requests in, replies by `re`, events out).
//! - [`session`]: the chat state, input to requests, events to lines, reconnection.
//! - [`commands`]: input line to action to request (pure).
//! - [`render`]: events to display lines (pure).
//! - [`repl`]: the rustyline thread (prompt, completion, persistent input history).
//! - [`discovery`]: finding servers on the LAN over UDP presence.

pub mod cli;
pub mod commands;
pub mod connection;
pub mod discovery;
pub mod render;
pub mod repl;
pub mod session;

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
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Fatal(_) => 1,
        }
    }
}
