//! The one place where rules meet delivery: [`Chat::apply`] runs a rule on the shared
//! [`State`] and, in the same critical section, [`deliver`]s its effects to the mailboxes and
//! hands what must be kept to durable storage.
//!
//! Because a rule and its fan-out happen under one lock, the order in which lines enter the
//! outboxes is the order in which the state changed: every member of a room sees its events in
//! one order, and a user's reply is queued before any event that follows from it. Delivery is
//! a non-blocking push of a shared `Bytes` per recipient; nothing here waits.

use std::sync::{Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use lanchat_protocol::RequestId;
use tracing::error;

use crate::cluster::Link;
use crate::effects::{Audience, Effects, Persist};
use crate::outbox::{LineRef, Outbox};
use crate::state::{Away, Refusal, State};
use crate::store::StoreHandle;

/// Something a line can be delivered to without waiting.
pub trait Mailbox: Clone {
    fn deliver(&self, line: Bytes);

    /// Deliver a line that goes to many: `framed` may keep a form of it made once for all
    /// (a WebSocket frame; see [`Outbox::push_shared`]).
    fn deliver_shared(&self, line: &LineRef, _framed: &mut Option<LineRef>) {
        self.deliver(Bytes::clone(line));
    }
}

impl Mailbox for Outbox {
    fn deliver(&self, line: Bytes) {
        // A full outbox marks its session as a slow consumer, which then ends: the line is not
        // lost to anyone who is still reading.
        self.push(line);
    }

    fn deliver_shared(&self, line: &LineRef, framed: &mut Option<LineRef>) {
        self.push_shared(line, framed);
    }
}

/// Apply `effects` to the mailboxes in `state`: the event to its audience, then the reply to
/// `actor` (see [`Effects`] for why in that order). Returns what must be persisted.
pub fn deliver<M: Mailbox>(
    state: &State<M>,
    actor: Option<&M>,
    effects: Effects,
) -> Option<Persist> {
    let Effects {
        reply,
        event,
        persist,
        rule: _,
    } = effects;
    if let Some(event) = event {
        // The event as a WebSocket text frame, made once if any member needs it.
        let mut framed = None;
        let line = LineRef::new(event.line);
        match event.to {
            Audience::Room { key, except } => {
                // A plain loop over the members' map: this is the hot loop of the server.
                if let Some(members) = state.room_mailboxes(&key) {
                    for (id, mailbox) in members {
                        if *id != except {
                            mailbox.deliver_shared(&line, &mut framed);
                        }
                    }
                }
            }
            Audience::User(id) => {
                if let Some(mailbox) = state.mailbox(id) {
                    mailbox.deliver_shared(&line, &mut framed);
                }
            }
            Audience::Users(ids) => {
                for id in ids {
                    if let Some(mailbox) = state.mailbox(id) {
                        mailbox.deliver_shared(&line, &mut framed);
                    }
                }
            }
        }
    }
    if let (Some(line), Some(actor)) = (reply, actor) {
        actor.deliver(line);
    }
    persist
}

/// The chat state of one server, and where its durable part goes.
///
/// Behind a `std::sync::Mutex`, not tokio's: every critical section is short and synchronous (a
/// rule and its non-blocking fan-out; no `.await` inside) and never touches a socket, which is
/// exactly the case the tokio documentation recommends a blocking mutex for.
pub struct Chat {
    state: Mutex<State<Outbox>>,
    store: Option<StoreHandle>,
    /// Cluster mode: set once at start, before any session (see [`crate::cluster`]).
    cluster: OnceLock<Link>,
}

impl Chat {
    pub fn new(state: State<Outbox>, store: Option<StoreHandle>) -> Self {
        Chat {
            state: Mutex::new(state),
            store,
            cluster: OnceLock::new(),
        }
    }

    /// Lock the state. A panic while it was held is logged and the state used as it is: one
    /// broken session must not take every other one down with it.
    pub fn lock(&self) -> MutexGuard<'_, State<Outbox>> {
        self.state.lock().unwrap_or_else(|poisoned| {
            error!("chat state lock was poisoned by a panic; continuing");
            poisoned.into_inner()
        })
    }

    pub fn store(&self) -> Option<&StoreHandle> {
        self.store.as_ref()
    }

    /// The key of the room called `name` when it must be looked for on disk before a request
    /// about it is applied: there is a data directory, the name is a room's name (no other can
    /// be on disk) and the room is not held in memory.
    pub fn absent_room_key(&self, name: &str) -> Option<String> {
        self.store.as_ref()?;
        lanchat_protocol::validate::check_room(name).ok()?;
        (!self.lock().holds_room(name)).then(|| lanchat_protocol::validate::name_key(name))
    }

    /// Run `rule` and apply its effects in one critical section; the reply goes to `actor`.
    pub fn apply<T>(
        &self,
        actor: &Outbox,
        rule: impl FnOnce(&mut State<Outbox>) -> Result<(T, Effects), Refusal>,
    ) -> Result<T, Refusal> {
        self.apply_stored(actor, None, rule)
    }

    /// [`Chat::apply`]; in cluster mode, with `stored` = `Some(re)`, the reply waits until the
    /// event is stored by JetStream (a `say`'s `ok`).
    fn apply_stored<T>(
        &self,
        actor: &Outbox,
        stored: Option<Option<&RequestId>>,
        rule: impl FnOnce(&mut State<Outbox>) -> Result<(T, Effects), Refusal>,
    ) -> Result<T, Refusal> {
        let mut state = self.lock();
        let (value, mut effects) = rule(&mut state)?;
        if let Some(link) = self.cluster.get() {
            effects = link.route(&mut state, actor, effects, stored)?;
        }
        let persist = deliver(&state, Some(actor), effects);
        // Still under the lock: the store sees a room's messages in history order.
        if let (Some(persist), Some(store)) = (persist, &self.store) {
            store.persist(persist);
        }
        Ok(value)
    }

    /// [`Chat::apply`] for a rule that returns nothing but effects.
    pub fn run(
        &self,
        actor: &Outbox,
        rule: impl FnOnce(&mut State<Outbox>) -> Result<Effects, Refusal>,
    ) -> Result<(), Refusal> {
        self.apply(actor, |state| rule(state).map(|effects| ((), effects)))
    }

    /// [`Chat::run`] for a `say` to request `re`: in cluster mode its `ok` is sent once JetStream
    /// has stored the message (or `unavailable` if it does not).
    pub fn run_stored(
        &self,
        actor: &Outbox,
        re: Option<&RequestId>,
        rule: impl FnOnce(&mut State<Outbox>) -> Result<Effects, Refusal>,
    ) -> Result<(), Refusal> {
        self.apply_stored(actor, Some(re), |state| rule(state).map(|e| ((), e)))
    }

    /// Cluster mode: deliver a `direct` line from another node to the user called by the
    /// folded nick `nick_key`; `None` if nobody here is, else their away text (see
    /// [`State::dm_target`]).
    pub fn deliver_direct(&self, nick_key: &str, line: Bytes) -> Option<Away> {
        let state = self.lock();
        let (id, away) = state.dm_target(nick_key)?;
        let effects = Effects::default().with_event(Audience::User(id), line);
        let _ = deliver(&state, None, effects);
        Some(away)
    }

    /// Cluster mode's link, once joined.
    pub fn cluster(&self) -> Option<&Link> {
        self.cluster.get()
    }

    /// Join this chat to a cluster; false if it already was.
    pub fn set_cluster(&self, link: Link) -> bool {
        self.lock().set_clustered();
        self.cluster.set(link).is_ok()
    }
}
