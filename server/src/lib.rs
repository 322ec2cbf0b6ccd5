//! lanchat-server: a tokio chat server speaking the line-based JSON protocol of PROTOCOL.md.
//!
//! The caller binds; [`run`] serves until its shutdown token is cancelled. Modules:
//! - [`config`]: command line and `Config`.
//! - [`listener`]: accept loops and back-off on accept errors.
//! - [`admission`]: connection caps (overall, per source, before hello) and the password throttle.
//! - [`startup`]: what `main` decides (listeners, limits, the data directory) as a testable function.
//! - [`session`]: one connection: the read loop, its timers, and its writer task.
//! - [`dispatch`]: one client as the protocol sees it: each request from decode to effects.
//! - [`guard`]: per-session protections (error and flood windows).
//! - [`budget`]: budgets charged to the nick and the address (they outlive a connection).
//! - [`buckets`]: a bounded table of token buckets, one per key (budgets, discovery answers).
//! - [`state`]: the chat rules: users, nicks, rooms, members, history; each rule returns effects.
//! - [`effects`]: what a rule returns: deliveries (audience + line) and persistence.
//! - [`chat`]: the shared state behind one short-held mutex; applies effects (fan-out, persistence).
//! - [`outbox`]: the bounded per-session outbound queue (slow consumers are dropped).
//! - [`history`]: a room's recent messages, stored as the lines that were sent.
//! - [`discovery`]: UDP beacons and answers to `discover`.
//! - [`store`]: durable history (`--data-dir`), written by its own thread off the hot path.
//! - [`logsafe`]: client- and network-supplied strings rendered safely for one log field.
//! - [`tls`]: the certificate (made once and kept, or given) and its fingerprint.
//! - [`port`]: one TCP port, three ways in: TLS, HTTP and JSON lines told apart by the first bytes.
//! - [`web`]: the web app's files, HTTP, and the WebSocket transport of the protocol.
//! - [`cluster`]: cluster mode (`--cluster`): rooms, history and nicks shared through NATS JetStream.

pub mod accounts;
pub mod admission;
pub mod buckets;
pub mod budget;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod dispatch;
pub mod effects;
pub mod guard;
pub mod history;
pub mod listener;
pub mod logsafe;
pub mod outbox;
pub mod port;
pub mod session;
pub mod startup;
pub mod state;
pub mod store;
pub mod tls;
pub mod web;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::admission::{Admission, Caps, Permit, Source};
use crate::budget::Budgets;
use crate::chat::Chat;

pub use config::{Args, Config};
pub use listener::Listener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::state::State;

/// Where a connection came from; `None` for a Unix socket.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<std::net::SocketAddr>);

impl Peer {
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.map(|a| a.ip())
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("unix"),
        }
    }
}

/// What can stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// State shared by every task of one server.
pub struct Shared {
    pub config: Config,
    pub chat: Chat,
    pub admission: Arc<Admission>,
    pub budgets: Budgets,
    /// Registered nicks (issue 15): their secrets' hashes, kept in the data directory if any.
    pub accounts: accounts::Accounts,
    /// Writes plain TCP sessions' queues once per turn of the runtime (started by [`run`]).
    pub flusher: Arc<outbox::Flusher>,
    next_session: AtomicU64,
    shutting_down: AtomicBool,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        Self::with_store(config, None)
    }

    pub fn with_store(config: Config, store: Option<store::StoreHandle>) -> Arc<Shared> {
        let accounts = accounts::Accounts::in_memory(config.max_accounts);
        Self::with_accounts(config, store, accounts)
    }

    /// [`Shared::with_store`] with accounts opened by the caller (from the data directory).
    pub fn with_accounts(
        config: Config,
        store: Option<store::StoreHandle>,
        accounts: accounts::Accounts,
    ) -> Arc<Shared> {
        let mut state = State::new(&config.default_room, config.history)
            .with_max_rooms(config.max_rooms)
            .with_history_memory(config.history_memory);
        if store.is_some() {
            // Only with a data directory: without one, forgetting a room would lose its history.
            state = state.with_room_idle(config.room_idle);
        }
        Arc::new(Shared {
            chat: Chat::new(state, store),
            budgets: Budgets::new(&config.limits, config.max_per_ip),
            admission: Admission::new(Caps {
                max_clients: config.max_clients,
                max_per_source: config.max_per_ip,
                // An operator who raises the connection caps (a NAT, a bot farm, a benchmark)
                // raises these with them.
                max_waiting: admission::MAX_WAITING.max(config.max_clients / 10),
                max_waiting_per_source: admission::MAX_WAITING_PER_SOURCE
                    .max(config.max_per_ip / 4),
            }),
            accounts,
            config,
            flusher: outbox::Flusher::new(),
            next_session: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        })
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Take a connection slot, or say why not.
    pub fn admit(&self, source: Source) -> Result<Permit, admission::NotAdmitted> {
        self.admission.admit(source)
    }

    /// Connections open right now (registered or not).
    pub fn connection_count(&self) -> usize {
        self.admission.open()
    }
}

/// Everything a server serves on, bound by the caller before it says it is ready.
pub struct Bound {
    pub listeners: Vec<Listener>,
    /// The UDP discovery socket from [`discovery::bind_socket`], when announcing.
    pub discovery: Option<std::net::UdpSocket>,
    /// The locked data directory and what it held, from [`store::Store::open`].
    pub store: Option<(store::Store, store::Loaded)>,
    /// The cluster joined at start-up (`--cluster`), from [`cluster::join`].
    pub cluster: Option<cluster::Joined>,
}

/// Rooms forgotten per expiry pass at most: the pass holds the chat lock, so it is bounded; a
/// longer backlog goes in the next passes.
const FORGET_PER_PASS: usize = 1000;

/// Every few seconds (a quarter of `--room-idle`, at most 5 s), forget the rooms that have been
/// without members for `--room-idle`. Each pass takes the head of the ordered idle set under the
/// lock, never a scan of the rooms.
async fn forget_idle_rooms(shared: Arc<Shared>, shutdown: CancellationToken) {
    let every = (shared.config.room_idle / 4).clamp(
        std::time::Duration::from_millis(250),
        std::time::Duration::from_secs(5),
    );
    let mut passes = tokio::time::interval(every);
    passes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            at = passes.tick() => {
                let forgotten = shared.chat.lock().expire_idle(at.into_std(), FORGET_PER_PASS);
                if forgotten > 0 {
                    info!(rooms = forgotten, "idle rooms forgotten from memory; their history stays on disk");
                }
            }
        }
    }
}

/// Serve until `shutdown` is cancelled, then say bye to every session, let them flush (bounded by
/// `config.shutdown_grace`), and return.
pub async fn run(bound: Bound, config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let Bound {
        listeners,
        discovery,
        store,
        cluster,
    } = bound;
    let (shared, writer) = match store {
        Some((store, loaded)) => {
            // The directory is locked by the store: no other server writes accounts.json.
            let accounts =
                accounts::Accounts::open(config.data_dir.as_deref(), config.max_accounts)
                    .map_err(|e| Error::Setup(e.to_string()))?;
            let (handle, thread) = store.start();
            let shared = Shared::with_accounts(config, Some(handle), accounts);
            {
                let mut state = shared.chat.lock();
                for (room, messages) in loaded.rooms {
                    for m in messages {
                        state.restore_message(&room, m);
                    }
                }
                for (room, topic) in loaded.topics {
                    state.restore_topic(&room, topic);
                }
                for (room, settings) in loaded.settings {
                    state.restore_settings(&room, settings);
                }
            }
            (shared, Some(thread))
        }
        None => (Shared::new(config), None),
    };
    let tracker = TaskTracker::new();
    let addrs: Vec<_> = listeners.iter().filter_map(|l| l.tcp_addr()).collect();
    let discovery = match (discovery, &shared.config.announce) {
        (Some(socket), Some(announce)) => Some(discovery::Discovery::start(
            socket,
            announce.clone(),
            &addrs,
            shared.clone(),
        )?),
        _ => None,
    };
    if let Some(joined) = cluster {
        cluster::start(joined, &shared, &shutdown, &tracker);
    }
    if shared.chat.store().is_some() {
        tracker.spawn(forget_idle_rooms(shared.clone(), shutdown.clone()));
    }
    // Untracked: it runs as long as the runtime, so that sessions ending last still get their
    // lines written.
    tokio::spawn(shared.flusher.clone().run());
    let mut accept_loops = Vec::new();
    for listener in listeners {
        accept_loops.push(tokio::spawn(listener::accept_loop(
            listener,
            shared.clone(),
            shutdown.clone(),
            tracker.clone(),
        )));
    }
    shutdown.cancelled().await;
    shared.shutting_down.store(true, Ordering::Relaxed);
    info!(
        sessions = shared.connection_count(),
        "shutting down: saying bye to every session"
    );
    for accept in accept_loops {
        let _ = accept.await;
    }
    tracker.close();
    if tokio::time::timeout(shared.config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        info!("some sessions did not finish flushing in time; closing them");
    }
    if let Some(discovery) = discovery {
        discovery.stop().await;
    }
    if let (Some(handle), Some(thread)) = (shared.chat.store(), writer) {
        // Flush and fsync what is queued; the thread ends once it has.
        let handle = handle.clone();
        let _ = tokio::task::spawn_blocking(move || {
            handle.shutdown(std::time::Duration::from_secs(2));
            // A writer stuck on a bad disk must not hold the exit past its promise: join only
            // a thread that has finished (or is finishing: it signalled done).
            if thread.is_finished() {
                let _ = thread.join();
            }
        })
        .await;
    }
    Ok(())
}
