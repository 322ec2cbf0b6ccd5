//! The in-process tier: the server's sessions and `run()` driven inside the test, over
//! `tokio::io::duplex` with a paused clock for every timer, and over real sockets on
//! `127.0.0.1:0`. Waits the e2e suite spends seconds on take milliseconds here.

mod accounts;
mod commands;
mod rooms;
mod serving;
mod support;
mod timers;
