//! Cluster mode (`--cluster`): lanchat nodes joined through NATS JetStream act as one chat.
//! Everything NATS lives here; the rest of the server sees three things:
//! - [`Link::route`], called by [`crate::chat::Chat`] in a rule's critical section: a room event
//!   is published to the room's subjects of the stream instead of being delivered (it is
//!   delivered, on every node, when it comes back from the stream: [`inbound`]); a user's nick,
//!   status or quit is delivered here as on one node and published for the other nodes; a
//!   private room's change of rules is published for every node to apply ([`privacy`]);
//! - [`Link::claim`] / [`Link::release`]: nicks unique across the cluster ([`nicks`]);
//! - [`Link::direct`]: a `dm` to another node's user ([`dm`]);
//! - [`Link::register`], [`Link::unregister`], [`Link::take_over`]: registered nicks
//!   cluster-wide ([`accounts`]);
//! - [`start`]: the node's tasks (publisher, stream consumer, heartbeat, members answers,
//!   nick renewals).
//!
//! Modules: [`wire`] (subject names, headers), [`roster`] (members other nodes hold),
//! [`publish`] (the one task that publishes, acks in order), [`inbound`] (the stream, in its
//! order, into the chat state), [`nicks`] (the nick bucket and its leases), [`dm`] (DMs between
//! nodes), [`privacy`] (private rooms' rules, one set for the cluster).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use lanchat_protocol::{ErrorCode, RequestId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::effects::{Audience, Delivery, Effects};
use crate::outbox::Outbox;
use crate::state::{Refusal, State};
use crate::Shared;

mod accounts;
mod dm;
mod identity;
mod inbound;
mod nicks;
mod privacy;
mod publish;
pub mod roster;
pub mod wire;

pub use roster::Roster;
use wire::{Names, Origin};

/// How long start-up waits for NATS before giving up (exit code 3).
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Events waiting to be published at most; beyond, a `say` is refused `unavailable` (no
/// unbounded buffering while NATS is slow or away).
const OUTBOUND_QUEUE: usize = 4096;

/// `--cluster`, `--cluster-name`, `--cluster-lease-secs`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub urls: Vec<String>,
    pub name: String,
    /// How long a silent node keeps its nicks and its members.
    pub lease: Duration,
    /// Copies of the stream and the buckets JetStream keeps (`--cluster-replicas`).
    pub replicas: usize,
}

impl ClusterConfig {
    /// The URLs for logs and errors: a user and password in one (`nats://user:pass@host`) shown
    /// as `***`.
    pub fn shown_urls(&self) -> String {
        let shown: Vec<String> = self.urls.iter().map(|u| wire::without_secret(u)).collect();
        shown.join(",")
    }

    /// `None` without URLs; the error is one line naming the flag.
    pub fn from_flags(
        urls: Vec<String>,
        name: String,
        lease_secs: u64,
        replicas: u8,
    ) -> Result<Option<ClusterConfig>, String> {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Ok(None);
        }
        wire::check_cluster_name(&name)?;
        for url in &urls {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("--cluster: {url:?}: {e}"))?;
        }
        Ok(Some(ClusterConfig {
            urls,
            name,
            lease: Duration::from_secs(lease_secs),
            replicas: usize::from(replicas),
        }))
    }
}

/// A node's connection to the cluster, made before the server says it listens.
pub struct Joined {
    config: ClusterConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    nicks: kv::Store,
    /// The accounts bucket, read before the server says it listens; taken by [`start`].
    accounts: std::sync::Mutex<Option<accounts::Opened>>,
    names: Names,
    node: Arc<str>,
    /// The stream's last sequence when this node joined, before any of its sessions: events up
    /// to it are history to this node, later ones are news (see `inbound`).
    start: u64,
    /// Changes when the client connects again after an outage.
    reconnected: tokio::sync::watch::Receiver<u64>,
    /// The node's one consumer of the stream, made before any session so that it misses nothing
    /// (the stream keeps only `--history` messages per room).
    events: std::sync::Mutex<Option<jetstream::consumer::push::Ordered>>,
}

/// Connect to NATS (within [`CONNECT_WAIT`]) and make sure the stream and the nick bucket exist.
/// `history`: messages kept per room (`--history`), the stream's per-subject limit.
pub async fn join(config: &ClusterConfig, history: usize) -> Result<Joined, String> {
    // Counts the connections made after the first: the stream's consumer is made again after
    // each (an ordered consumer does not always notice a short outage by itself).
    let (reconnects, reconnected) = tokio::sync::watch::channel(0u64);
    let work = async {
        let client = with_url_credentials(async_nats::ConnectOptions::new(), &config.urls)
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    reconnects.send_modify(|n| *n += 1);
                }
                std::future::ready(())
            })
            .connection_timeout(CONNECT_WAIT)
            // On a LAN NATS is back in moments: try again soon, at most every 2 s.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(250 * attempts.max(1) as u64).min(Duration::from_secs(2))
            })
            .connect(config.urls.clone())
            .await
            .map_err(|e| format!("cannot reach NATS at {}: {e}", config.shown_urls()))?;
        let js = jetstream::new(client.clone());
        let names = Names::new(&config.name);
        let mut stream = open_stream(
            &js,
            stream::Config {
                name: names.stream.clone(),
                subjects: names.stream_subjects(),
                storage: stream::StorageType::File,
                max_messages_per_subject: i64::try_from(history.max(1)).unwrap_or(i64::MAX),
                discard: stream::DiscardPolicy::Old,
                num_replicas: config.replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot open the JetStream stream {}: {e}", names.stream))?;
        privacy::add_rules_subject(&js, &mut stream, &names).await?;
        // Expiring: a node that stops renewing loses its nicks after the lease.
        open_stream(
            &js,
            stream::Config {
                max_age: config.lease,
                duplicate_window: config.lease,
                ..bucket_config(&names.nick_bucket, config.replicas)
            },
        )
        .await
        .map_err(|e| format!("cannot open the nick bucket {}: {e}", names.nick_bucket))?;
        let nicks = js
            .get_key_value(&names.nick_bucket)
            .await
            .map_err(|e| format!("cannot open the nick bucket {}: {e}", names.nick_bucket))?;
        let accounts = accounts::open(&js, &names, config.replicas).await?;
        let start = stream
            .info()
            .await
            .map_err(|e| format!("cannot read the JetStream stream {}: {e}", names.stream))?
            .state
            .last_sequence;
        let events = stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot read the JetStream stream {}: {e}", names.stream))?
            .messages()
            .await
            .map_err(|e| format!("cannot read the JetStream stream {}: {e}", names.stream))?;
        Ok(Joined {
            reconnected,
            start,
            events: std::sync::Mutex::new(Some(events)),
            config: config.clone(),
            client,
            js,
            stream,
            nicks,
            accounts: std::sync::Mutex::new(Some(accounts)),
            names,
            node: uuid::Uuid::new_v4().simple().to_string().into(),
        })
    };
    tokio::time::timeout(CONNECT_WAIT * 2, work)
        .await
        .map_err(|_| {
            format!(
                "NATS at {} did not answer within {} s",
                config.shown_urls(),
                (CONNECT_WAIT * 2).as_secs()
            )
        })?
}

/// The user and password (`nats://user:pass@host`) or token (`nats://token@host`) of the first
/// URL that has one: async-nats 0.46 does not take them from the URL by itself.
fn with_url_credentials(
    options: async_nats::ConnectOptions,
    urls: &[String],
) -> async_nats::ConnectOptions {
    let credentials = urls
        .iter()
        .filter_map(|u| u.parse::<async_nats::ServerAddr>().ok())
        .find(|a| a.has_user_pass());
    let Some(addr) = credentials else {
        return options;
    };
    match (addr.username(), addr.password()) {
        (Some(user), Some(pass)) => options.user_and_password(user.to_owned(), pass.to_owned()),
        (Some(token), None) => options.token(token.to_owned()),
        _ => options,
    }
}

/// The stream of a key-value bucket, made as async-nats' `create_key_value` would make it (that
/// call first reads the account's info, whose nats-server 2.9 form it cannot parse): one value
/// per key, file storage, `replicas` copies, no expiry (the nick bucket adds its lease).
pub fn bucket_config(bucket: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Open a stream, making it if need be. One made earlier with another replica count than
/// `--cluster-replicas` asks for is left as it is, with a warning: the first node made it, and
/// changing the count of a stream in use lost acknowledged messages in our tests with
/// nats-server 2.9 (see ARCHITECTURE.md, "Cluster mode").
pub async fn open_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, String> {
    let replicas = config.num_replicas;
    let mut stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| e.to_string())?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    if info.config.num_replicas != replicas {
        warn!(
            stream = %info.config.name,
            kept = info.config.num_replicas,
            asked = replicas,
            "the stream keeps another number of copies than --cluster-replicas asks for; \
             it stays as the first node made it (change it with the NATS tools, e.g. \
             `nats stream edit NAME --replicas N`, when no node is running)"
        );
    }
    Ok(stream)
}

/// What the chat state needs of the cluster, under its lock: no waiting, no I/O.
pub struct Link {
    node: Arc<str>,
    cluster: String,
    client: async_nats::Client,
    names: Names,
    outbound: mpsc::Sender<publish::Outbound>,
    nicks: nicks::Nicks,
    accounts: Option<accounts::Registry>,
}

impl Link {
    /// This node's id (in every event it publishes).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Cluster mode's part of applying `effects` (see the module doc). `stored`: the rule is a
    /// `say` to request `re`, whose reply waits until JetStream has stored the message; if it
    /// cannot be queued for publishing, the `say` is refused `unavailable`.
    pub fn route(
        &self,
        state: &mut State<Outbox>,
        actor: &Outbox,
        mut effects: Effects,
        stored: Option<Option<&RequestId>>,
    ) -> Result<Effects, Refusal> {
        // A privacy change goes first: a node reading the event after it has the room's new
        // rules.
        let rule = effects.rule.take();
        if let Some(change) = &rule {
            self.publish_rule(change);
        }
        match effects.event.take() {
            Some(Delivery {
                to: Audience::Room { key, except },
                line,
            }) => {
                let held = stored.map(|re| publish::Held {
                    actor: actor.clone(),
                    reply: effects.reply.take(),
                    re: re.cloned(),
                });
                let held_say = held.is_some();
                let arriving = line
                    .starts_with(br#"{"type":"join""#)
                    .then(|| (key.to_string(), except));
                // Serialised with the tag first: the type is the line's start.
                let subject = if line.starts_with(br#"{"type":"message""#) {
                    self.names.room_subject(&key)
                } else {
                    self.names.event_subject(&key)
                };
                let out = publish::Outbound {
                    subject,
                    origin: self.origin(except),
                    payload: line,
                    held,
                    arriving: arriving.clone(),
                };
                match self.outbound.try_send(out) {
                    Ok(()) => {
                        if let Some((key, session)) = arriving {
                            state.roster().arriving(&key, session);
                        }
                    }
                    Err(e) => {
                        if held_say {
                            return Err(unavailable());
                        }
                        warn!(error = %e, "cluster: a room event could not be queued for NATS; other nodes miss it");
                    }
                }
            }
            // A kick's `leave`: the other nodes make it from the rule (`privacy`).
            Some(
                delivery @ Delivery {
                    to: Audience::Users(_),
                    ..
                },
            ) if rule.is_none() => {
                let out = publish::Outbound {
                    subject: self.names.user_subject(),
                    origin: self.origin(0),
                    payload: Bytes::clone(&delivery.line),
                    held: None,
                    arriving: None,
                };
                if let Err(e) = self.outbound.try_send(out) {
                    warn!(error = %e, "cluster: a user event could not be queued for NATS; other nodes miss it");
                }
                effects.event = Some(delivery);
            }
            other => effects.event = other,
        }
        Ok(effects)
    }

    /// Queue a privacy change for the room's rules subject (see [`privacy`]).
    fn publish_rule(&self, change: &crate::state::RuleChange) {
        let out = publish::Outbound {
            subject: self
                .names
                .rules_subject(&lanchat_protocol::validate::name_key(&change.room)),
            origin: self.origin(0),
            payload: privacy::encode(change),
            held: None,
            arriving: None,
        };
        if let Err(e) = self.outbound.try_send(out) {
            warn!(error = %e, "cluster: a privacy change could not be queued for NATS; other nodes miss it");
        }
    }

    fn origin(&self, except: crate::state::SessionId) -> Origin {
        Origin {
            node: self.node.to_string(),
            except,
            deadline_ms: 0,
        }
    }

    /// Claim the folded nick `key` for this node, cluster-wide; `nick_taken` when another
    /// session anywhere holds it, `unavailable` when NATS cannot say.
    pub async fn claim(&self, key: &str, nick: &str) -> Result<(), Refusal> {
        self.nicks.claim(key, nick).await
    }

    /// Send a `dm` to `to`, a nick this node does not hold, through the node that holds it:
    /// the `ok` line to request `re`, or `no_such_nick` / `unavailable`.
    pub async fn direct(
        &self,
        re: Option<&RequestId>,
        from: &str,
        to: &str,
        text: &str,
    ) -> Result<Bytes, Refusal> {
        let bucket = self.nicks.bucket();
        dm::send(&self.client, bucket, &self.cluster, re, from, to, text).await
    }

    /// The claim of `key` passes from the session holding it to another of this node (a `hello`
    /// that took the nick over with its secret): the old session's release is skipped. False
    /// when this node holds no claim of it.
    pub fn hand_over(&self, key: &str) -> bool {
        self.nicks.hand_over(key)
    }

    /// Give a claimed nick back (its session left or changed nick); at once, not awaited.
    pub fn release(&self, key: &str) {
        self.nicks.release(key);
    }

    /// Register `nick` with `hash` cluster-wide (`again`: it was registered when asked); once
    /// this returns `Ok` the accounts bucket has it, and so does this node's table.
    pub async fn register(
        &self,
        accounts: &crate::accounts::Accounts,
        nick: &str,
        hash: String,
        again: bool,
    ) -> Result<(), Refusal> {
        let registry = self.accounts.as_ref().ok_or_else(unavailable)?;
        registry.register(accounts, nick, hash, again).await
    }

    /// Unregister the folded nick `key` cluster-wide; false when it is not registered.
    pub async fn unregister(
        &self,
        accounts: &crate::accounts::Accounts,
        key: &str,
    ) -> Result<bool, Refusal> {
        let registry = self.accounts.as_ref().ok_or_else(unavailable)?;
        registry.unregister(accounts, key).await
    }

    /// Wait until this node's table has every registration made anywhere so far (bounded).
    pub async fn accounts_caught_up(&self) -> Result<(), Refusal> {
        let registry = self.accounts.as_ref().ok_or_else(unavailable)?;
        registry.catch_up().await
    }

    /// The secret of folded nick `key`, held by another node's session, was proved here: that
    /// node ends its session and gives the nick up (bounded); the caller then claims it.
    pub async fn take_over(&self, key: &str) -> Result<(), Refusal> {
        let bucket = self.nicks.bucket();
        accounts::take_over(&self.client, bucket, &self.names, &self.node, key).await
    }
}

fn unavailable() -> Refusal {
    (
        ErrorCode::Unavailable,
        "the cluster's message store cannot be reached; nothing was sent, try again".into(),
    )
}

/// Start the node's cluster tasks and give the chat its [`Link`].
pub fn start(
    mut joined: Joined,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let nicks = nicks::Nicks::new(joined.nicks.clone(), joined.node.clone());
    let opened = joined.accounts.get_mut().ok().and_then(Option::take);
    let registry = opened.map(|o| accounts::start(o, &joined.js, &shared.accounts));
    let link = Link {
        node: joined.node.clone(),
        cluster: joined.config.name.clone(),
        client: joined.client.clone(),
        names: joined.names.clone(),
        outbound: tx,
        nicks: nicks.clone(),
        accounts: registry.as_ref().map(|(r, _)| r.clone()),
    };
    if !shared.chat.set_cluster(link) {
        warn!("cluster: started twice; the second start is ignored");
        return;
    }
    tracker.spawn(accounts::run(
        registry.map(|(_, changes)| changes),
        joined.client.clone(),
        joined.names.replace_subject(&joined.node),
        (shared.clone(), joined.reconnected.clone()),
        shutdown.clone(),
    ));
    tracker.spawn(publish::run(
        joined.client.clone(),
        joined.js.clone(),
        rx,
        shared.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(nicks.renew(joined.config.lease, shutdown.clone()));
    let events = joined.events.get_mut().ok().and_then(Option::take);
    tracker.spawn(inbound::run(
        Arc::new(joined),
        events,
        shared.clone(),
        shutdown.clone(),
    ));
}
