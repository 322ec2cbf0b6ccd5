//! Nicks unique across the cluster: a key-value bucket keyed by the folded nick's token, claimed
//! with `create` (JetStream's compare-and-set: of two nodes racing, exactly one wins). The
//! bucket's `max_age` is the lease: this node puts its nicks again every third of it, so a node
//! that dies (kill -9, power cut) loses its nicks within one lease.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use lanchat_protocol::ErrorCode;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::wire::token;
use crate::state::Refusal;

/// How long a claim may take before the nick is refused `unavailable`.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// This node's claims, shared by the sessions that make and release them and the renewal task.
#[derive(Clone)]
pub struct Nicks {
    bucket: kv::Store,
    node: Arc<str>,
    /// Token -> the value kept under it (the node and the nick as spelt) and the revision this
    /// node last wrote: a renewal or a release touches the key only if nobody wrote since.
    held: Arc<Mutex<HashMap<String, (Bytes, u64)>>>,
    /// Tokens whose claim passes from a session told to go to the session that took its nick
    /// over with the secret, both on this node: the next release of each is skipped.
    handed: Arc<Mutex<HashSet<String>>>,
}

impl Nicks {
    pub fn new(bucket: kv::Store, node: Arc<str>) -> Nicks {
        Nicks {
            bucket,
            node,
            held: Arc::default(),
            handed: Arc::default(),
        }
    }

    /// The bucket (its values say which node holds a nick).
    pub fn bucket(&self) -> &kv::Store {
        &self.bucket
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Bytes, u64)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn claim(&self, key: &str, nick: &str) -> Result<(), Refusal> {
        let token = token(key);
        let value = Bytes::from(format!("{}\n{nick}", self.node));
        let created =
            tokio::time::timeout(CLAIM_WAIT, self.bucket.create(&token, value.clone())).await;
        match created {
            Ok(Ok(revision)) => {
                self.held().insert(token, (value, revision));
                Ok(())
            }
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err((ErrorCode::NickTaken, format!("nick \"{nick}\" is taken")))
            }
            Ok(Err(e)) => {
                warn!(error = %e, "cluster: a nick could not be claimed");
                Err(super::unavailable())
            }
            Err(_) => Err(super::unavailable()),
        }
    }

    /// The claim of `key`, held here, passes to another session of this node: the release by
    /// the session that held it is skipped. False when this node does not hold it.
    pub fn hand_over(&self, key: &str) -> bool {
        let token = token(key);
        if !self.held().contains_key(&token) {
            return false;
        }
        self.handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token);
        true
    }

    pub fn release(&self, key: &str) {
        let token = token(key);
        let handed = self
            .handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        if handed {
            return;
        }
        let Some((_, revision)) = self.held().remove(&token) else {
            return;
        };
        let bucket = self.bucket.clone();
        tokio::spawn(async move {
            let deleted = bucket.delete_expect_revision(&token, Some(revision));
            if !matches!(tokio::time::timeout(CLAIM_WAIT, deleted).await, Ok(Ok(()))) {
                warn!("cluster: a released nick stays taken until its lease runs out");
            }
        });
    }

    /// Give the claim of `key` up now and wait until the bucket has it (another node takes the
    /// nick over); unlike [`Nicks::release`], awaited. False when it is not held here or the
    /// bucket did not answer.
    pub async fn give_up(&self, key: &str) -> bool {
        let token = token(key);
        let Some((_, revision)) = self.held().remove(&token) else {
            return false;
        };
        let deleted = self.bucket.delete_expect_revision(&token, Some(revision));
        matches!(tokio::time::timeout(CLAIM_WAIT, deleted).await, Ok(Ok(())))
    }

    /// Put every held nick again every third of `lease`, until `shutdown`; then give them back.
    pub async fn renew(self, lease: Duration, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {
                    let held: Vec<(String, Bytes, u64)> = self
                        .held()
                        .iter()
                        .map(|(k, (v, r))| (k.clone(), v.clone(), *r))
                        .collect();
                    for (token, value, revision) in held {
                        let update = self.bucket.update(&token, value, revision);
                        match tokio::time::timeout(CLAIM_WAIT, update).await {
                            Ok(Ok(new)) => {
                                let renewed = match self.held().get_mut(&token) {
                                    Some(entry) if entry.1 == revision => {
                                        entry.1 = new;
                                        true
                                    }
                                    _ => false,
                                };
                                if !renewed {
                                    // Released meanwhile: the renewal made it taken again.
                                    let delete = self.bucket.delete_expect_revision(&token, Some(new));
                                    let _ = tokio::time::timeout(CLAIM_WAIT, delete).await;
                                }
                            }
                            // Given up meanwhile: not to be taken again.
                            _ if !self.held().contains_key(&token) => {}
                            // Expired meanwhile (NATS away longer than the lease): take it
                            // again if nobody has.
                            _ => {
                                let again = self.bucket.create(&token, value_of(&self, &token));
                                match tokio::time::timeout(CLAIM_WAIT, again).await {
                                    Ok(Ok(new)) => {
                                        if let Some(entry) = self.held().get_mut(&token) {
                                            entry.1 = new;
                                        }
                                    }
                                    _ => warn!("cluster: a nick's lease could not be renewed"),
                                }
                            }
                        }
                    }
                }
            }
        }
        let held: Vec<(String, u64)> = self.held().drain().map(|(k, (_, r))| (k, r)).collect();
        for (token, revision) in held {
            let delete = self.bucket.delete_expect_revision(&token, Some(revision));
            let _ = tokio::time::timeout(Duration::from_secs(1), delete).await;
        }
    }
}

/// The value this node keeps under `token` (empty if it was released meanwhile).
fn value_of(nicks: &Nicks, token: &str) -> Bytes {
    nicks
        .held()
        .get(token)
        .map(|(v, _)| v.clone())
        .unwrap_or_default()
}
