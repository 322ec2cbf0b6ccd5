//! The accounts side of a client (see [`crate::accounts`]): `register`, `unregister`, and the
//! secret a registered nick needs in `hello` and `nick`.
//!
//! Whatever is slow happens in a [`Job`] that the session runs outside the chat lock (Argon2 on
//! the blocking pool, waiting for a replaced session to leave, writing `accounts.json`); its
//! [`Done`] comes back to [`Client::account_done`], which re-runs the request with what it
//! learnt, as a room load does. Wrong secrets count toward the address's password throttle
//! ([`crate::admission`]); once it is reached no secret is checked until the window has passed.

use std::time::{Duration, Instant};

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{
    Command, ErrorCode, Hello, Reply, ReplyData, Request, RequestId, ServerFrame,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Client, Refused, Step};
use crate::accounts::{registered, Claim};
use crate::admission::{Permit, Source};
use crate::Shared;

/// Tokens of the events budget a `register` takes: it costs an Argon2id hash (19 MiB and tens
/// of milliseconds of a core), so a nick may register about 20 times in a burst (an address 80), then
/// once every 5 s (an address 4 times as often), where a `join` could be made 200 times.
const REGISTER_TOKENS: f64 = 10.0;

/// How long a `hello` that takes a nick over waits for the session holding it to leave.
const REPLACE_WAIT: Duration = Duration::from_secs(5);

/// Work a request waits for, run by the session off the chat lock.
#[derive(Debug)]
pub enum Job {
    /// Check `secret` against the hash of the registered nick `key`, then re-run `then`.
    Verify {
        re: Option<RequestId>,
        secret: String,
        hash: String,
        key: String,
        then: Command,
    },
    /// Hash a secret for `register`.
    Hash {
        re: Option<RequestId>,
        secret: String,
    },
    /// Wait until the session told `bye replaced` has left, then re-run `hello`.
    Replace {
        re: Option<RequestId>,
        hello: Hello,
        gone: CancellationToken,
    },
    /// Write the accounts, then reply with `data`.
    Save {
        re: Option<RequestId>,
        data: ReplyData,
    },
    /// Cluster mode: claim the folded nick `key` cluster-wide, then re-run `then` (see
    /// `dispatch/cluster.rs`).
    Claim {
        re: Option<RequestId>,
        key: String,
        nick: String,
        then: Command,
    },
    /// Cluster mode: a `dm` to another node's user.
    Direct {
        re: Option<RequestId>,
        from: String,
        to: String,
        text: String,
    },
    /// Cluster mode: store the registration of `nick` in the accounts bucket (`again`: it was
    /// registered already), then reply.
    Register {
        re: Option<RequestId>,
        nick: String,
        hash: String,
        again: bool,
    },
    /// Cluster mode: delete the account of `nick` (folded: `key`) from the bucket, then reply.
    Unregister {
        re: Option<RequestId>,
        key: String,
        nick: String,
    },
    /// Cluster mode: the secret of folded nick `key`, held on another node, was proved: that
    /// node ends its session and gives the nick up, then `hello` is re-run (see
    /// `dispatch/cluster.rs`).
    TakeOver {
        re: Option<RequestId>,
        key: String,
        hello: Hello,
    },
}

/// What a [`Job`] found.
#[derive(Debug)]
pub enum Done {
    Verified {
        re: Option<RequestId>,
        right: bool,
        key: String,
        then: Command,
    },
    Hashed {
        re: Option<RequestId>,
        hash: Option<String>,
    },
    Replaced {
        re: Option<RequestId>,
        hello: Hello,
    },
    Saved {
        re: Option<RequestId>,
        data: ReplyData,
        persistent: bool,
    },
    Claimed {
        re: Option<RequestId>,
        key: String,
        claimed: Result<(), crate::state::Refusal>,
        then: Command,
    },
    /// The `ok` line of a `dm` sent through another node, or its refusal.
    Directed {
        re: Option<RequestId>,
        sent: Result<bytes::Bytes, crate::state::Refusal>,
    },
    /// Cluster mode: what to reply to a `register` or `unregister`, once the bucket has it.
    Stored {
        re: Option<RequestId>,
        stored: Result<ReplyData, crate::state::Refusal>,
    },
}

impl Job {
    /// Do the work; only this session waits.
    pub async fn run(self, shared: &Shared) -> Done {
        let accounts = &shared.accounts;
        match self {
            Job::Verify {
                re,
                secret,
                hash,
                key,
                then,
            } => Done::Verified {
                re,
                right: accounts.verify(secret, hash).await,
                key,
                then,
            },
            Job::Hash { re, secret } => Done::Hashed {
                re,
                hash: accounts.hash(secret).await,
            },
            Job::Replace { re, hello, gone } => {
                // Bounded: the session told to go leaves as soon as its task next runs; if it
                // has not by then, the hello finds the nick taken.
                let _ = tokio::time::timeout(REPLACE_WAIT, gone.cancelled()).await;
                Done::Replaced { re, hello }
            }
            Job::Save { re, data } => Done::Saved {
                re,
                data,
                persistent: accounts.save().await,
            },
            Job::Claim {
                re,
                key,
                nick,
                then,
            } => Done::Claimed {
                claimed: match shared.chat.cluster() {
                    Some(link) => {
                        // With the claim, at once: the nick's account as the cluster has it
                        // now, for the re-run request to check (a registration on another node
                        // a moment ago counts).
                        let (claimed, caught_up) =
                            tokio::join!(link.claim(&key, &nick), link.accounts_caught_up());
                        if let (Ok(()), Err((_, why))) = (&claimed, caught_up) {
                            warn!(%why, "cluster: accounts may lag behind the other nodes");
                        }
                        claimed
                    }
                    None => Ok(()),
                },
                re,
                key,
                then,
            },
            Job::Direct { re, from, to, text } => Done::Directed {
                sent: match shared.chat.cluster() {
                    Some(link) => link.direct(re.as_ref(), &from, &to, &text).await,
                    None => Err((ErrorCode::NoSuchNick, format!("nobody is called \"{to}\""))),
                },
                re,
            },
            Job::Register {
                re,
                nick,
                hash,
                again,
            } => Done::Stored {
                stored: match shared.chat.cluster() {
                    Some(link) => link.register(accounts, &nick, hash, again).await.map(|()| {
                        ReplyData::Register {
                            nick,
                            persistent: true,
                        }
                    }),
                    None => Err(unavailable()),
                },
                re,
            },
            Job::Unregister { re, key, nick } => Done::Stored {
                stored: match shared.chat.cluster() {
                    Some(link) => match link.unregister(accounts, &key).await {
                        Ok(true) => Ok(ReplyData::Unregister { nick }),
                        Ok(false) => Err(not_registered(&nick)),
                        Err(refusal) => Err(refusal),
                    },
                    None => Err(unavailable()),
                },
                re,
            },
            Job::TakeOver { re, key, hello } => {
                if let Some(link) = shared.chat.cluster() {
                    if let Err((_, why)) = link.take_over(&key).await {
                        warn!(%why, "cluster: a take-over could not reach the nick's node");
                    }
                }
                Done::Replaced { re, hello }
            }
        }
    }
}

fn not_registered(nick: &str) -> crate::state::Refusal {
    (
        ErrorCode::NoSuchNick,
        format!("nick \"{nick}\" is not registered"),
    )
}

fn unavailable() -> crate::state::Refusal {
    (
        ErrorCode::Unavailable,
        "the cluster cannot be reached; nothing was changed, try again".to_owned(),
    )
}

impl Client {
    fn source(&self) -> Source {
        self.permit.as_ref().map_or(Source::Unknown, Permit::source)
    }

    /// The accounts rules of a registered client's request: `register` and `unregister`
    /// entirely, and for `nick` the secret of a registered nick. `Ok` hands the command back to
    /// [`Client::request`] to be applied as usual.
    // `Err` is the step the session takes instead: moved once per request, as `line` returns it.
    #[allow(clippy::result_large_err)]
    pub(super) fn account_command(
        &mut self,
        re: Option<&RequestId>,
        command: Command,
        now: Instant,
    ) -> Result<Command, Step> {
        let Some(who) = &self.registered else {
            return Ok(command);
        };
        let events = &self.shared.budgets.events;
        let charge = |nick_key: &str, tokens: f64| {
            events
                .charge(self.source(), nick_key, tokens, now)
                .map_err(|wait| Refused {
                    refusal: (
                        ErrorCode::RateLimited,
                        "too many joins, leaves, nick, status, topic and account changes; \
                         this one was not applied"
                            .to_owned(),
                    ),
                    retry_after: Some(wait),
                })
        };
        match command {
            Command::Register { secret } => {
                if let Err(refused) = charge(&self.nick_key, REGISTER_TOKENS) {
                    return Err(self.refused(re.cloned(), refused, now).into());
                }
                Err(Step::Account(Box::new(Job::Hash {
                    re: re.cloned(),
                    secret,
                })))
            }
            Command::Unregister {} => {
                if let Err(refused) = charge(&self.nick_key, 1.0) {
                    return Err(self.refused(re.cloned(), refused, now).into());
                }
                if self.shared.chat.cluster().is_some() {
                    let nick = self.shared.chat.lock().nick(who).to_owned();
                    return Err(Step::Account(Box::new(Job::Unregister {
                        re: re.cloned(),
                        key: name_key(&nick),
                        nick,
                    })));
                }
                let removed = {
                    let st = self.shared.chat.lock();
                    let nick = st.nick(who).to_owned();
                    let removed = self.shared.accounts.table().remove(&name_key(&nick));
                    match removed {
                        Some(_) => Ok(nick),
                        None => Err(nick),
                    }
                };
                match removed {
                    Ok(nick) => Err(Step::Account(Box::new(Job::Save {
                        re: re.cloned(),
                        data: ReplyData::Unregister { nick },
                    }))),
                    Err(nick) => Err(self.error(re.cloned(), not_registered(&nick), now).into()),
                }
            }
            Command::Nick { nick, secret } => {
                let own = self.nick_key.clone();
                let claim = self.shared.accounts.table().claim(&nick, Some(&own));
                let then = |secret| Command::Nick {
                    nick: nick.clone(),
                    secret,
                };
                match self.needs_secret(claim, &nick, secret, Some(&own), now) {
                    Ok(secret) => Ok(then(secret)),
                    Err(Gate::Refused(refused)) => {
                        Err(self.refused(re.cloned(), refused, now).into())
                    }
                    Err(Gate::Verify { secret, hash, key }) => {
                        Err(Step::Account(Box::new(Job::Verify {
                            re: re.cloned(),
                            secret: secret.clone(),
                            hash,
                            key,
                            then: then(Some(secret)),
                        })))
                    }
                }
            }
            other => Ok(other),
        }
    }

    /// The accounts rules of a `hello` whose nick is valid: `Ok` to go on registering.
    #[allow(clippy::result_large_err)]
    pub(super) fn hello_account(
        &mut self,
        re: Option<&RequestId>,
        hello: Hello,
        now: Instant,
    ) -> Result<Hello, Step> {
        let claim = self.shared.accounts.table().claim(&hello.nick, None);
        let Hello {
            nick,
            protocol,
            client,
            password,
            secret,
            autojoin,
        } = hello;
        let secret = match self.needs_secret(claim, &nick, secret, None, now) {
            Ok(secret) => secret,
            Err(Gate::Refused(refused)) => {
                return Err(self.refused(re.cloned(), refused, now).into())
            }
            Err(Gate::Verify { secret, hash, key }) => {
                let hello = Hello {
                    nick,
                    protocol,
                    client,
                    password,
                    secret: Some(secret.clone()),
                    autojoin,
                };
                return Err(Step::Account(Box::new(Job::Verify {
                    re: re.cloned(),
                    secret,
                    hash,
                    key,
                    then: Command::Hello(hello),
                })));
            }
        };
        let hello = Hello {
            nick,
            protocol,
            client,
            password,
            secret,
            autojoin,
        };
        // Proven: the session holding the nick, if any, is told to go, and the hello waits.
        let proven = self.proven.is_some() && !self.replaced;
        if proven {
            // Cluster mode: the claim passes to this session before the old one is told to go,
            // so its release cannot free the nick meanwhile.
            if self.shared.chat.lock().holds_nick(&hello.nick) {
                self.adopt_claim(&hello.nick);
            }
            let gone = {
                let state = self.shared.chat.lock();
                let holder = state.nick_holder(&hello.nick);
                let holder = holder.and_then(|old| Some((old, state.mailbox(old)?.alarms())));
                holder.map(|(old, alarms)| self.shared.accounts.kick(old, &alarms))
            };
            if let Some(gone) = gone {
                info!(peer = %self.peer, nick = %hello.nick, "nick taken over with its secret");
                return Err(Step::Account(Box::new(Job::Replace {
                    re: re.cloned(),
                    hello,
                    gone,
                })));
            }
        }
        // Cluster mode, a claim skipped for a take-over that is not one (the holder left
        // meanwhile, or the secret proves nothing): the nick is claimed the usual way first.
        if let Some(claim) = self.unclaimed(re, &hello) {
            return Err(claim);
        }
        Ok(hello)
    }

    /// Whether `nick` (claimed as `claim`) may be taken with `secret`: `Ok` when it may (the
    /// secret handed back), or what to do instead.
    pub(super) fn needs_secret(
        &self,
        claim: Claim,
        nick: &str,
        secret: Option<String>,
        own: Option<&str>,
        now: Instant,
    ) -> Result<Option<String>, Gate> {
        let (key, hash) = match claim {
            Claim::Free => return Ok(secret),
            Claim::LooksLike { nick: other } => {
                return Err(Gate::Refused(Refused::from((
                    ErrorCode::NickTaken,
                    format!("nick \"{nick}\" looks like the registered nick \"{other}\""),
                ))))
            }
            Claim::Registered { key, hash } => (key, hash),
        };
        if Some(key.as_str()) == own || self.proven.as_deref() == Some(key.as_str()) {
            return Ok(secret);
        }
        let Some(secret) = secret else {
            return Err(Gate::Refused(Refused::from(registered(nick))));
        };
        if let Err(wait) = self.shared.admission.password_allowed(self.source(), now) {
            let message = format!(
                "too many wrong secrets from your address; try again in {} s",
                wait.as_secs().max(1)
            );
            return Err(Gate::Refused(Refused {
                refusal: (ErrorCode::NickRegistered, message),
                retry_after: Some(wait),
            }));
        }
        Err(Gate::Verify { secret, hash, key })
    }

    /// Carry on with a request after its [`Job`].
    pub fn account_done(&mut self, done: Done, now: Instant) -> Step {
        match done {
            Done::Claimed {
                re,
                key,
                claimed,
                then,
            } => self.claimed(re, key, claimed, then, now),
            Done::Stored { re, stored } => match stored {
                Ok(data) => {
                    if let ReplyData::Register { nick, .. } = &data {
                        info!(peer = %self.peer, nick = %crate::logsafe::field(nick), "nick registered in the cluster");
                    }
                    self.push(&ServerFrame::Reply(Reply { re, data }));
                    Step::Next
                }
                Err(refusal) => self.error(re, refusal, now).into(),
            },
            Done::Directed { re, sent } => match sent {
                Ok(line) => {
                    self.outbox().push(line);
                    Step::Next
                }
                Err(refusal) => self.error(re, refusal, now).into(),
            },
            Done::Verified {
                re,
                right: false,
                then,
                ..
            } => {
                let source = self.source();
                self.shared.admission.password_failed(source, now);
                let nick = match &then {
                    Command::Hello(h) => h.nick.clone(),
                    Command::Nick { nick, .. } => nick.clone(),
                    _ => String::new(),
                };
                info!(peer = %self.peer, %source, nick = %crate::logsafe::field(&nick), "wrong secret for a registered nick");
                let refusal = (
                    ErrorCode::NickRegistered,
                    format!("wrong secret for the registered nick \"{nick}\""),
                );
                self.error(re, refusal, now).into()
            }
            Done::Verified {
                re,
                right: true,
                key,
                then,
            } => {
                self.proven = Some(key);
                let step = self.request(Request::new(re, then), now, false);
                self.settle(step)
            }
            Done::Replaced { re, hello } => {
                self.replaced = true;
                let step = self.request(Request::new(re, Command::Hello(hello)), now, false);
                self.settle(step)
            }
            Done::Hashed { re, hash: None } => {
                let refusal = (
                    ErrorCode::TooManyAccounts,
                    "the secret could not be hashed; try again later".to_owned(),
                );
                self.error(re, refusal, now).into()
            }
            Done::Hashed {
                re,
                hash: Some(hash),
            } => {
                let Some(who) = &self.registered else {
                    // Not reached: only a registered session registers. Still one reply.
                    let refusal = (ErrorCode::NotRegistered, "send hello first".to_owned());
                    return self.error(re, refusal, now).into();
                };
                let accounts = &self.shared.accounts;
                if self.shared.chat.cluster().is_some() {
                    let nick = self.shared.chat.lock().nick(who).to_owned();
                    let again = accounts.table().is_registered(&name_key(&nick));
                    return Step::Account(Box::new(Job::Register {
                        re,
                        nick,
                        hash,
                        again,
                    }));
                }
                // Under the chat lock: the nick is this session's while it is registered.
                let inserted = {
                    let st = self.shared.chat.lock();
                    let nick = st.nick(who).to_owned();
                    let inserted = accounts.table().insert(&nick, hash, accounts.max());
                    inserted.map(|()| nick)
                };
                match inserted {
                    Ok(nick) => Step::Account(Box::new(Job::Save {
                        re,
                        data: ReplyData::Register {
                            nick,
                            persistent: false,
                        },
                    })),
                    Err(refusal) => self.error(re, refusal, now).into(),
                }
            }
            Done::Saved {
                re,
                data,
                persistent,
            } => {
                let data = match data {
                    ReplyData::Register { nick, .. } => {
                        info!(peer = %self.peer, nick = %crate::logsafe::field(&nick), persistent, "nick registered");
                        ReplyData::Register { nick, persistent }
                    }
                    other => other,
                };
                if !persistent && self.shared.accounts.persistent() {
                    warn!("accounts changed in memory only: see the error above");
                }
                self.push(&ServerFrame::Reply(Reply { re, data }));
                Step::Next
            }
        }
    }

    /// After a re-run request: the proof and the take-over are for that request only, unless
    /// it needs another job (a take-over after a proof).
    pub(super) fn settle(&mut self, step: Step) -> Step {
        if !matches!(step, Step::Account(_)) {
            self.proven = None;
            self.replaced = false;
        }
        step
    }
}

/// Why a nick cannot be taken as it was asked for.
pub(super) enum Gate {
    Refused(Refused),
    /// Its secret must be checked first.
    Verify {
        secret: String,
        hash: String,
        key: String,
    },
}
