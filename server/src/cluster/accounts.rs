//! Registered nicks across the cluster (issue 19): the accounts live in a key-value bucket,
//! `lanchat_<name>_accounts`, keyed by the folded nick's token, each value an
//! [`Account`](crate::accounts::Account) as JSON. No `max_age`: accounts do not expire.
//!
//! Every node keeps its [`Table`] (the rules, checked under the chat lock without waiting) as a
//! mirror of the bucket: filled from the bucket's values before the node says it listens, then
//! fed by a watch of the bucket ([`follow`]); a delete removes. Each key's revision is kept, so
//! an older value that arrives late never overwrites a newer one.
//!
//! A registration is a compare-and-set over the whole bucket: it is published with the bucket's
//! last sequence this node has seen (`Nats-Expected-Last-Sequence`). If any other node changed
//! an account since, the publish is refused, this node catches up and checks the rules again.
//! So of two nodes registering the same nick, or two nicks that look alike, at once, exactly
//! one wins; the other gets the refusal a registered nick gets on one server.
//!
//! A `hello` that proved the secret of a nick held by another node's session asks that node
//! (core NATS, `lanchat.<name>.node.<id>.replace`, see [`answer_replaces`]) to tell its session
//! `bye replaced` and give the nick's claim up. That node cannot check the secret (the hash is
//! checked where the `hello` is); it takes the request on trust: whoever can publish on the
//! cluster's NATS subjects is a node of the cluster.
//!
//! Lock order: the mirror, then the table; the chat lock is never taken with the mirror.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::{self, kv, message::PublishMessage};
use async_nats::HeaderMap;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::wire::{token, untoken, Names};
use crate::accounts::{registered, Account, Accounts, Table};
use crate::state::Refusal;
use crate::Shared;

/// How long a registration, an unregistration or a catch-up may take before `unavailable`.
const STORE_WAIT: Duration = Duration::from_secs(5);
/// How long the node holding a nick may take to end its session and give the nick up.
pub const REPLACE_WAIT: Duration = Duration::from_secs(5);
/// Registrations raced by other nodes' changes at most before giving up (`unavailable`).
const ATTEMPTS: usize = 5;
/// A key no token can be (tokens are even-length hex): put once in a new bucket, so that the
/// bucket's last sequence is never 0 (an expected last sequence of 0 checks nothing).
const FIRST_KEY: &str = "lanchat";

/// The bucket as [`super::join`] opened it: its values then, and the watch that goes on from
/// them.
pub struct Opened {
    store: kv::Store,
    watch: kv::Watch,
    initial: Vec<kv::Entry>,
}

/// Make the bucket if it is new, read every value, and start watching.
/// `replicas`: `--cluster-replicas`.
pub async fn open(
    js: &jetstream::Context,
    names: &Names,
    replicas: usize,
) -> Result<Opened, String> {
    let bucket = &names.account_bucket;
    let fail = |e: &dyn std::fmt::Display| format!("cannot open the accounts bucket {bucket}: {e}");
    // No `max_age`: accounts do not expire.
    let mut stream = super::open_stream(js, super::bucket_config(bucket, replicas))
        .await
        .map_err(|e| fail(&e))?;
    let store = js.get_key_value(bucket).await.map_err(|e| fail(&e))?;
    let state = stream.info().await.map_err(|e| fail(&e))?.state.clone();
    if state.last_sequence == 0 {
        match store.create(FIRST_KEY, "accounts".into()).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(&e)),
        }
    }
    let mut watch = store.watch_with_history(">").await.map_err(|e| fail(&e))?;
    let mut initial = Vec::new();
    // Every key's last value, then `delta` 0 (there is at least one: FIRST_KEY's).
    loop {
        let entry = watch
            .next()
            .await
            .ok_or_else(|| fail(&"the watch ended"))?
            .map_err(|e| fail(&e))?;
        let last = entry.delta == 0;
        initial.push(entry);
        if last {
            break;
        }
    }
    Ok(Opened {
        store,
        watch,
        initial,
    })
}

/// The table's source of truth, per key: the revision it was last set from, and the bucket's
/// last sequence seen.
#[derive(Debug, Default)]
pub struct Mirror {
    revisions: HashMap<String, u64>,
    seen: u64,
}

impl Mirror {
    /// Set the table from one bucket entry: key `token`, its `revision`, `Some(value)` for a
    /// put, `None` for a delete or purge. False when it changed nothing (an older revision, a
    /// key that is no token).
    pub fn apply(
        &mut self,
        table: &mut Table,
        token: &str,
        revision: u64,
        value: Option<&[u8]>,
    ) -> bool {
        self.seen = self.seen.max(revision);
        let Some(key) = untoken(token) else {
            return false;
        };
        if self.revisions.get(&key).is_some_and(|&r| r >= revision) {
            return false;
        }
        self.revisions.insert(key.clone(), revision);
        match value.map(serde_json::from_slice::<Account>) {
            Some(Ok(account)) => table.store(key, account),
            Some(Err(e)) => {
                warn!(error = %e, "cluster: an account in the bucket is not an account; ignored");
                table.remove(&key);
            }
            None => {
                table.remove(&key);
            }
        }
        true
    }

    /// The bucket's last sequence as far as this node knows.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// This node's handle on the bucket.
#[derive(Clone)]
pub struct Registry {
    store: kv::Store,
    js: jetstream::Context,
    mirror: Arc<Mutex<Mirror>>,
    /// The last sequence seen, for [`Registry::catch_up`] to wait on.
    seen: watch::Sender<u64>,
}

impl Registry {
    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, accounts: &Accounts, entry: &kv::Entry) {
        let value = match entry.operation {
            kv::Operation::Put => Some(&entry.value[..]),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        self.apply_value(accounts, &entry.key, entry.revision, value);
    }

    /// [`Mirror::apply`] to the table, and tell whoever waits in [`Registry::catch_up`].
    fn apply_value(&self, accounts: &Accounts, token: &str, revision: u64, value: Option<&[u8]>) {
        let seen = {
            let mut mirror = self.mirror();
            mirror.apply(&mut accounts.table(), token, revision, value);
            mirror.seen()
        };
        self.seen.send_if_modified(|s| {
            let newer = seen > *s;
            *s = seen.max(*s);
            newer
        });
    }

    /// Register the nick `nick` (held by the asking session) with `hash`, cluster-wide: the
    /// table's rules, then a compare-and-set publish; on success the table has it. `again`:
    /// the nick was registered when the session asked (a new secret for its own account);
    /// otherwise an account for it made meanwhile by another node wins.
    pub async fn register(
        &self,
        accounts: &Accounts,
        nick: &str,
        hash: String,
        again: bool,
    ) -> Result<(), Refusal> {
        for _ in 0..ATTEMPTS {
            let (key, account, expected) = {
                let mirror = self.mirror();
                let table = accounts.table();
                let (key, account) = table.prepare(nick, hash.clone(), accounts.max())?;
                if table.is_registered(&key) != again {
                    return Err(registered(nick));
                }
                (key, account, mirror.seen())
            };
            let payload = serde_json::to_vec(&account).expect("accounts always serialise");
            let publish = PublishMessage::build()
                .payload(payload.into())
                .expected_last_sequence(expected);
            match self.publish(&key, publish).await {
                Ok(revision) => {
                    let value = serde_json::to_vec(&account).expect("accounts always serialise");
                    self.apply_value(accounts, &token(&key), revision, Some(&value));
                    return Ok(());
                }
                Err(Some(jetstream::context::PublishErrorKind::WrongLastSequence)) => {
                    // Another node changed an account meanwhile: learn it, check again.
                    info!(
                        "cluster: accounts changed elsewhere during a registration; checking again"
                    );
                    self.catch_up().await?;
                }
                Err(_) => return Err(super::unavailable()),
            }
        }
        warn!("cluster: a registration kept racing other nodes' changes; refused");
        Err(super::unavailable())
    }

    /// Forget the account of folded nick `key`, cluster-wide; false when it is not registered.
    pub async fn unregister(&self, accounts: &Accounts, key: &str) -> Result<bool, Refusal> {
        if !accounts.table().is_registered(key) {
            return Ok(false);
        }
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        let publish = PublishMessage::build().headers(headers);
        let revision = self
            .publish(key, publish)
            .await
            .map_err(|_| super::unavailable())?;
        self.apply_value(accounts, &token(key), revision, None);
        Ok(true)
    }

    /// Publish to the key of folded nick `key`; its revision, or the error's kind.
    async fn publish(
        &self,
        key: &str,
        publish: PublishMessage,
    ) -> Result<u64, Option<jetstream::context::PublishErrorKind>> {
        // Refused at once while NATS is away: the client would keep the publish and send it
        // after reconnecting, storing an account whose `register` was answered `unavailable`.
        if self.js.client().connection_state() != async_nats::connection::State::Connected {
            return Err(None);
        }
        let subject = format!("{}{}", self.store.prefix, token(key));
        let stored = async {
            self.js
                .send_publish(subject, publish)
                .await
                .map_err(|e| e.kind())?
                .await
                .map_err(|e| e.kind())
        };
        match tokio::time::timeout(STORE_WAIT, stored).await {
            Ok(Ok(ack)) => Ok(ack.sequence),
            Ok(Err(kind)) => Err(Some(kind)),
            Err(_) => Err(None),
        }
    }

    /// Wait until the table holds every change the bucket held when this was called (bounded:
    /// `unavailable` when NATS cannot say or the watch lags too long).
    pub async fn catch_up(&self) -> Result<(), Refusal> {
        let mut seen = self.seen.subscribe();
        let work = async {
            let last = self
                .store
                .stream
                .get_info()
                .await
                .map_err(|_| super::unavailable())?
                .state
                .last_sequence;
            seen.wait_for(|s| *s >= last)
                .await
                .map(|_| ())
                .map_err(|_| super::unavailable())
        };
        tokio::time::timeout(STORE_WAIT, work)
            .await
            .map_err(|_| super::unavailable())?
    }

    /// The watch made again from the first change not seen, after NATS came back (tried every
    /// 250 ms until JetStream answers, as the stream's consumer is).
    async fn watch_again(&self) -> kv::Watch {
        loop {
            let from = self.mirror().seen() + 1;
            match self.store.watch_all_from_revision(from).await {
                Ok(again) => return again,
                Err(e) => {
                    warn!(error = %e, "cluster: the accounts watch could not be made again yet")
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The registry over `opened`'s bucket, with the table set from its values; the watch to
/// [`follow`].
pub fn start(
    opened: Opened,
    js: &jetstream::Context,
    accounts: &Accounts,
) -> (Registry, kv::Watch) {
    let Opened {
        store,
        watch,
        initial,
    } = opened;
    let registry = Registry {
        store,
        js: js.clone(),
        mirror: Arc::default(),
        seen: watch::Sender::new(0),
    };
    for entry in &initial {
        registry.apply(accounts, entry);
    }
    info!(
        accounts = accounts.table().len(),
        "cluster: registered nicks read from the accounts bucket"
    );
    (registry, watch)
}

/// The node's accounts tasks, until `shutdown`: [`follow`] the bucket's `changes` and
/// [`answer_replaces`] on `subject`.
pub async fn run(
    changes: Option<kv::Watch>,
    client: async_nats::Client,
    subject: String,
    (shared, reconnected): (Arc<Shared>, watch::Receiver<u64>),
    shutdown: CancellationToken,
) {
    let registry = shared.chat.cluster().and_then(|link| link.accounts.clone());
    let following = async {
        match (registry, changes) {
            (Some(registry), Some(changes)) => {
                follow(registry, changes, shared.clone(), reconnected).await
            }
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = following => {}
        _ = answer_replaces(client, subject, shared.clone()) => {}
    }
}

/// Keep the table in step with the bucket: every change any node makes. After NATS comes back
/// the watch is made again from the first change not seen.
async fn follow(
    registry: Registry,
    mut changes: kv::Watch,
    shared: Arc<Shared>,
    mut reconnected: watch::Receiver<u64>,
) {
    loop {
        tokio::select! {
            next = changes.next() => match next {
                Some(Ok(entry)) => registry.apply(&shared.accounts, &entry),
                Some(Err(e)) => warn!(error = %e, "cluster: the accounts watch failed once"),
                None => {
                    warn!("cluster: the accounts watch ended; registrations made elsewhere are not seen");
                    return std::future::pending().await;
                }
            },
            changed = reconnected.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
                if *reconnected.borrow_and_update() <= 1 {
                    continue;
                }
                changes = registry.watch_again().await;
            }
        }
    }
}

/// A request to give a nick up (its folded key) and what came of it.
#[derive(Serialize, Deserialize)]
struct Replace {
    nick: String,
}

#[derive(Serialize, Deserialize)]
struct Replaced {
    released: bool,
}

/// Ask the node holding folded nick `key` (per the nick bucket) to end that session and give
/// the nick up. The caller has proved the nick's secret. It then claims the nick as usual
/// (which fails `nick_taken` if the holder did not let go).
pub async fn take_over(
    client: &async_nats::Client,
    nicks: &kv::Store,
    names: &Names,
    me: &str,
    key: &str,
) -> Result<(), Refusal> {
    let entry = tokio::time::timeout(STORE_WAIT, nicks.get(token(key)))
        .await
        .map_err(|_| super::unavailable())?
        .map_err(|_| super::unavailable())?;
    let Some(entry) = entry else {
        // Free already: the claim takes it.
        return Ok(());
    };
    let node = String::from_utf8_lossy(&entry);
    let Some((node, _)) = node.split_once('\n') else {
        return Ok(());
    };
    if node == me {
        return Ok(());
    }
    let payload = serde_json::to_vec(&Replace {
        nick: key.to_owned(),
    })
    .expect("serialises");
    let asked = client.request(names.replace_subject(node), payload.into());
    // A second more than the holder waits for its session.
    match tokio::time::timeout(REPLACE_WAIT + Duration::from_secs(1), asked).await {
        Ok(Ok(answer)) => {
            let released =
                serde_json::from_slice::<Replaced>(&answer.payload).is_ok_and(|r| r.released);
            if !released {
                info!("cluster: the node holding a nick did not give it up");
            }
        }
        Ok(Err(e)) => warn!(error = %e, "cluster: the node holding a nick did not answer"),
        Err(_) => warn!("cluster: the node holding a nick did not answer in time"),
    }
    Ok(())
}

/// Answer other nodes' take-overs of this node's nicks, each in its own task.
async fn answer_replaces(client: async_nats::Client, subject: String, shared: Arc<Shared>) {
    let Ok(mut requests) = client.subscribe(subject).await else {
        warn!("cluster: cannot answer take-overs; a secret on another node cannot take a nick held here");
        return std::future::pending().await;
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else { continue };
        let Ok(Replace { nick }) = serde_json::from_slice(&request.payload) else {
            continue;
        };
        let (client, shared) = (client.clone(), shared.clone());
        tokio::spawn(async move {
            let released = give_up(&shared, &nick).await;
            let answer = serde_json::to_vec(&Replaced { released }).expect("serialises");
            let _ = client.publish(reply, answer.into()).await;
        });
    }
    std::future::pending().await
}

/// End this node's session holding folded nick `key` (`bye replaced`; its room-mates on every
/// node see `quit` `replaced`) and give its claim up, once it has left (or after
/// [`REPLACE_WAIT`]). False when no session here holds it.
async fn give_up(shared: &Shared, key: &str) -> bool {
    let Some(link) = shared.chat.cluster() else {
        return false;
    };
    let gone = {
        let state = shared.chat.lock();
        let Some(old) = state.nick_holder(key) else {
            return false;
        };
        let Some(alarms) = state.mailbox(old).map(|m| m.alarms()) else {
            return false;
        };
        // The claim passes to this task before the session is told to go, so that its own
        // release, not awaited, cannot race the one below.
        if !link.nicks.hand_over(key) {
            return false;
        }
        shared.accounts.kick(old, &alarms)
    };
    info!("cluster: a nick held here was taken over with its secret on another node");
    if tokio::time::timeout(REPLACE_WAIT, gone.cancelled())
        .await
        .is_err()
    {
        warn!("cluster: a session taken over did not leave in time; its nick is given up anyway");
    }
    link.nicks.give_up(key).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Claim;

    fn account(nick: &str) -> Vec<u8> {
        serde_json::to_vec(&Account {
            nick: nick.into(),
            hash: format!("hash of {nick}"),
            created: 1,
        })
        .unwrap()
    }

    #[test]
    fn the_mirror_follows_puts_and_deletes_and_ignores_older_revisions() {
        let (mut mirror, mut table) = (Mirror::default(), Table::default());
        let ann = token("ann");
        assert!(mirror.apply(&mut table, &ann, 3, Some(&account("Ann"))));
        assert!(table.is_registered("ann"));
        assert_eq!(mirror.seen(), 3);
        // A lookalike is refused from the mirror's table as from any.
        assert!(matches!(table.claim("Ann", None), Claim::Registered { .. }));
        // An older value arriving late (the register's own apply, then the watch's) changes
        // nothing.
        assert!(!mirror.apply(&mut table, &ann, 3, Some(&account("ANN"))));
        assert!(!mirror.apply(&mut table, &ann, 2, None));
        assert!(table.is_registered("ann"));
        // A delete removes; a later put brings it back.
        assert!(mirror.apply(&mut table, &ann, 5, None));
        assert!(!table.is_registered("ann"));
        assert!(mirror.apply(&mut table, &ann, 9, Some(&account("ann"))));
        assert!(table.is_registered("ann"));
        assert_eq!(mirror.seen(), 9);
    }

    #[test]
    fn keys_that_are_no_token_count_as_seen_and_change_nothing() {
        let (mut mirror, mut table) = (Mirror::default(), Table::default());
        assert!(!mirror.apply(&mut table, FIRST_KEY, 1, Some(b"accounts")));
        assert_eq!(mirror.seen(), 1);
        assert!(table.is_empty());
        // Not an account: not registered.
        assert!(mirror.apply(&mut table, &token("bob"), 2, Some(b"{")));
        assert!(table.is_empty());
    }

    #[test]
    fn the_first_key_is_never_a_token() {
        assert_eq!(untoken(FIRST_KEY), None);
    }
}
