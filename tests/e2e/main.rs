//! End-to-end tests against the real `lanchat-server` binary (and the clients), all in one test
//! binary as ripgrep does. Run `cargo build --workspace --bins` first (scripts/test does).

mod abuse;
mod accounts;
mod activity;
mod browser;
mod client;
mod cluster;
mod cluster_accounts;
mod cluster_nodes;
mod cluster_private;
mod cluster_replicas;
mod commands;
mod conversations;
mod discovery;
mod durable;
mod errors;
mod fanout;
mod faults;
mod hygiene;
mod interop;
mod lifecycle;
mod limits;
mod names;
mod netns;
mod private;
mod settings;
mod soak;
mod terminal;
mod tls;
mod trust;
mod typing;
mod vectors;
mod websocket;
