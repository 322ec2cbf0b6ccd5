//! The stream, in its order, into this node's chat state: one ordered consumer over every
//! subject of the stream, from its first message. Events stored before this node started
//! (sequence up to `start`) only fill history and topics; later ones also change the members
//! other nodes hold and are delivered to this node's members, the line as stored (encoded once,
//! by the node that published it). Plus the core-NATS side: heartbeats, so that a dead node's
//! members are forgotten within a lease, and `members` answers, so that a node starting late
//! learns who is where.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::push::{self, OrderedErrorKind};
use async_nats::jetstream::consumer::DeliverPolicy;
use bytes::Bytes;
use futures::StreamExt;
use lanchat_protocol::{Member, QuitEvent, ServerFrame};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::wire::Origin;
use super::Joined;
use crate::chat::deliver;
use crate::effects::{Audience, Delivery, Effects};
use crate::history::StoredMessage;
use crate::state::State;
use crate::Shared;

/// How long a starting node collects the other nodes' `members` answers.
const ACCOUNT_WINDOW: Duration = Duration::from_millis(500);

/// A node's own members, as it answers a `members` request.
#[derive(Serialize, Deserialize)]
struct Account {
    node: String,
    rooms: Vec<(String, Vec<Member>)>,
}

pub async fn run(
    joined: Arc<Joined>,
    events: Option<push::Ordered>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let Some(events) = events else { return };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = answer_members(&joined, &shared) => {}
        _ = heartbeats(&joined, &shared) => {}
        _ = consume(&joined, events, &shared) => {}
        _ = super::dm::receive(&joined, &shared) => {}
    }
}

/// Read the stream until the connection gives up for good (the ordered consumer recovers by
/// itself from gaps; after a reconnect, or when its NATS server is lost, it is made again here).
async fn consume(joined: &Joined, mut messages: push::Ordered, shared: &Shared) {
    let start = joined.start;
    // Before reading any event (they wait in the consumer meanwhile): see `learn_members`.
    learn_members(joined, shared).await;
    let me: &str = &joined.node;
    let mut replayed = start == 0;
    let mut last = 0;
    let mut reconnected = joined.reconnected.clone();
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            changed = reconnected.changed() => {
                if changed.is_err() {
                    return;
                }
                // The first connection is the one the consumer was made on.
                if *reconnected.borrow_and_update() <= 1 {
                    continue;
                }
                info!(after = last, "cluster: NATS is back; reading the stream again");
                messages = reopen(joined, last + 1).await;
                continue;
            }
        };
        let Some(next) = next else { return };
        let message = match next {
            Ok(m) => m,
            Err(e) if e.kind() == OrderedErrorKind::MissingHeartbeat => {
                // The consumer's NATS server is gone while this node's connection is not (a NATS
                // cluster lost a server): the ordered consumer does not recover from that by
                // itself. Made again on a live server, from the next event.
                warn!(
                    after = last,
                    "cluster: the stream consumer went silent; reading the stream again"
                );
                messages = reopen(joined, last + 1).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cluster: the stream consumer is recovering");
                continue;
            }
        };
        let Ok(info) = message.info() else { continue };
        let seq = info.stream_sequence;
        if seq <= last {
            continue;
        }
        last = seq;
        let stored_ms =
            u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let Some(origin) = Origin::parse(message.headers.as_ref()) else {
            continue;
        };
        let rules = joined.names.rules_of(&message.subject);
        if !origin.in_time(stored_ms) && rules.is_none() {
            // Its sender was told `unavailable`: on no node does it count. (A privacy change
            // was answered `ok` when made, and its node applied it: late, it counts everywhere.)
            continue;
        }
        let subject = &message.subject;
        let live = seq > start;
        let mut state = shared.chat.lock();
        if origin.node != me {
            state.roster().heard(&origin.node, Instant::now());
        }
        let effects = match rules {
            Some(key) => {
                super::privacy::apply(&mut state, me, &key, &origin, &message.payload, live)
            }
            None => Effects {
                event: apply(
                    &mut state,
                    me,
                    joined.names.room_of(subject),
                    &origin,
                    &message.payload,
                    live,
                ),
                ..Effects::default()
            },
        };
        // Nothing to persist: `--data-dir` is refused with `--cluster` (the stream is the store).
        let _ = deliver(&state, None, effects);
        drop(state);
        if !replayed && seq >= start {
            replayed = true;
            shared.chat.lock().roster().replay_done();
            info!(events = start, "cluster: the stream's history is loaded");
        }
    }
}

/// A new ordered consumer from sequence `from`, tried every 250 ms until NATS answers.
async fn reopen(joined: &Joined, from: u64) -> push::Ordered {
    loop {
        let consumer = joined
            .stream
            .clone()
            .create_consumer(push::OrderedConfig {
                deliver_subject: joined.client.new_inbox(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await;
        if let Ok(consumer) = consumer {
            if let Ok(messages) = consumer.messages().await {
                return messages;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What one stream event changes here, and whom it reaches on this node (`live`: stored after
/// this node started; earlier ones only fill history and topics).
pub(super) fn apply<M: Clone>(
    state: &mut State<M>,
    me: &str,
    room: Option<String>,
    origin: &Origin,
    line: &Bytes,
    live: bool,
) -> Option<Delivery> {
    let frame = ServerFrame::decode(line).ok()?;
    let mine = origin.node == me;
    let node = origin.node.as_str();
    let Some(room) = room else {
        // A user's nick, status or quit: this node's own were delivered when made.
        match (&frame, live) {
            (ServerFrame::Quit(q), false) => state.roster().replayed_quit(node, &q.nick),
            (ServerFrame::Nick(n), false) => state.roster().replayed_rename(node, &n.old, &n.new),
            _ => {}
        }
        if mine || !live {
            return None;
        }
        let rooms = match &frame {
            ServerFrame::Nick(n) => state.roster().rename(node, &n.old, &n.new),
            ServerFrame::Presence(m) => state.roster().presence(node, m),
            ServerFrame::Quit(q) => state.roster().quit(node, &q.nick),
            _ => return None,
        };
        let to = Audience::Users(state.local_members_of(&rooms));
        if matches!(frame, ServerFrame::Quit(_)) {
            for room in &rooms {
                state.remote_left(room);
            }
        }
        return Some(Delivery {
            to,
            line: Bytes::clone(line),
        });
    };
    match &frame {
        ServerFrame::Join(j) => {
            state.invitation_used(&room, &j.nick);
            if !live {
                state.roster().replayed(&room, node, &j.nick, true);
            }
        }
        ServerFrame::Leave(l) if !live => state.roster().replayed(&room, node, &l.nick, false),
        _ => {}
    }
    match &frame {
        ServerFrame::Message(m) => {
            let id = Uuid::parse_str(&m.id).ok()?;
            let stored = StoredMessage {
                id,
                line: Bytes::clone(line),
            };
            state.restore_message(&m.room, stored);
        }
        ServerFrame::Topic(t) if !mine => state.restore_topic(&t.room, t.topic.clone()),
        // Every mode event in stream order, old ones too: the last says whether it is private.
        ServerFrame::Mode(m) if !mine => state
            .roster()
            .set_private(&room, m.invite_only || m.has_key),
        ServerFrame::Join(j) if live && !mine => {
            state.hold_room(&j.room);
            state.roster().join(&room, node, &j.nick);
        }
        ServerFrame::Join(_) if mine => state.roster().arrived(&room, origin.except),
        ServerFrame::Leave(l) if live && !mine => {
            state.roster().leave(&room, node, &l.nick);
            state.remote_left(&room);
        }
        _ => {}
    }
    if !live {
        return None;
    }
    let key = state.room_key(&room)?;
    let except = if mine { origin.except } else { 0 };
    let to = state.room_audience(key, except);
    Some(Delivery {
        to,
        line: Bytes::clone(line),
    })
}

/// Ask every node for its members and take their answers (those that come within
/// [`ACCOUNT_WINDOW`]; events after the stream position read before supersede them).
async fn learn_members(joined: &Joined, shared: &Shared) {
    let inbox = joined.client.new_inbox();
    let Ok(mut answers) = joined.client.subscribe(inbox.clone()).await else {
        return;
    };
    let asked = joined
        .client
        .publish_with_reply(joined.names.members_subject(), inbox, Bytes::new())
        .await;
    if asked.is_err() {
        return;
    }
    let until = tokio::time::Instant::now() + ACCOUNT_WINDOW;
    while let Ok(Some(answer)) = tokio::time::timeout_at(until, answers.next()).await {
        let Ok(account) = serde_json::from_slice::<Account>(&answer.payload) else {
            continue;
        };
        if account.node != *joined.node {
            shared
                .chat
                .lock()
                .roster()
                .replace_node(&account.node, account.rooms);
        }
    }
}

/// Answer other nodes' `members` requests with this node's members.
async fn answer_members(joined: &Joined, shared: &Shared) {
    let Ok(mut requests) = joined
        .client
        .subscribe(joined.names.members_subject())
        .await
    else {
        return std::future::pending().await;
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else { continue };
        let rooms = shared.chat.lock().local_account();
        let account = Account {
            node: joined.node.to_string(),
            rooms,
        };
        if let Ok(payload) = serde_json::to_vec(&account) {
            let _ = joined.client.publish(reply, payload.into()).await;
        }
    }
    std::future::pending().await
}

/// Say this node is alive every third of the lease; forget the members of nodes silent for a
/// whole lease, telling this node's members that they quit.
async fn heartbeats(joined: &Joined, shared: &Shared) {
    let lease = joined.config.lease;
    let subject = joined.names.alive_subject();
    let Ok(mut alive) = joined.client.subscribe(subject.clone()).await else {
        return std::future::pending().await;
    };
    let mut every = tokio::time::interval(lease / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cut_off = false;
    loop {
        tokio::select! {
            Some(beat) = alive.next() => {
                if let Ok(node) = std::str::from_utf8(&beat.payload) {
                    if node != &*joined.node {
                        shared.chat.lock().roster().heard(node, Instant::now());
                    }
                }
            }
            _ = every.tick() => {
                let connected = joined.client.connection_state()
                    == async_nats::connection::State::Connected;
                if !connected {
                    // Silence from everyone is this node's trouble: forget nobody.
                    cut_off = true;
                    continue;
                }
                if cut_off {
                    cut_off = false;
                    shared.chat.lock().roster().heard_all(Instant::now());
                    info!("cluster: NATS is back; asking the other nodes who is where");
                    learn_members(joined, shared).await;
                }
                let node = Bytes::copy_from_slice(joined.node.as_bytes());
                let _ = joined.client.publish(subject.clone(), node).await;
                forget_silent(shared, lease);
            }
        }
    }
}

fn forget_silent(shared: &Shared, lease: Duration) {
    let mut state = shared.chat.lock();
    for node in state.roster().silent(Instant::now(), lease) {
        let lost = state.roster().forget_node(&node);
        info!(%node, users = lost.len(), "cluster: a node went silent; its users are gone");
        for (nick, rooms) in lost {
            let line = ServerFrame::Quit(QuitEvent {
                nick,
                reason: "node lost".into(),
            })
            .encode_line();
            let to = Audience::Users(state.local_members_of(&rooms));
            let _ = deliver(&state, None, Effects::default().with_event(to, line));
        }
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
