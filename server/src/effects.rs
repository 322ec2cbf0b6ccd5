//! What a chat rule causes besides its change to the state: lines to deliver (to one audience
//! each, encoded once) and what durable storage must be told. Rules in [`crate::state`] return
//! [`Effects`]; [`crate::chat`] applies them. This is the seam a new delivery path (a backplane
//! between servers, another transport) plugs into: it sees every effect in state order.

use std::sync::Arc;

use bytes::Bytes;

use crate::state::SessionId;

/// A room's key: its name folded by `name_key`. Shared, so that an effect can name the room
/// without copying the string.
pub type RoomKey = Arc<str>;

/// Who receives an event line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every member of a room but one (the user who caused the event).
    Room { key: RoomKey, except: SessionId },
    /// One user (the target of a `dm`).
    User(SessionId),
    /// These users, each once (a user's neighbours: everyone who shares a room with them).
    Users(Vec<SessionId>),
}

/// One event line and who receives it. The line is encoded once, whatever the audience.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub to: Audience,
    pub line: Bytes,
}

/// What durable storage must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// A message line, appended to its room's history.
    Message { room_key: RoomKey, line: Bytes },
    /// A room's topic (empty: no topic) and its privacy, replacing the ones before.
    Topic {
        room_key: RoomKey,
        room: String,
        topic: String,
        settings: crate::state::RoomSettings,
    },
}

/// What one rule causes besides its change to the state. All of it is applied in the rule's
/// critical section, so the reply precedes every event that follows from a later change. Within
/// it the event is queued first and the reply last: the acting user is never in a room event's
/// or a neighbour event's audience, and only a `dm` to oneself shows the `direct` before the `ok`
/// (PROTOCOL.md allows both). Queued last, the sender's writer is the task woken last, the one
/// tokio runs next, which is how the server always did it.
#[derive(Debug, Default)]
#[must_use]
pub struct Effects {
    pub reply: Option<Bytes>,
    pub event: Option<Delivery>,
    pub persist: Option<Persist>,
    /// Cluster mode: a change to a room's privacy that every node applies to its own copy, in
    /// the stream's order (see `crate::cluster`). One server has nothing more to do with it.
    /// Boxed: rare, and `Effects` travels by value through every rule, `say` included.
    pub rule: Option<Box<crate::state::RuleChange>>,
}

impl Effects {
    pub(crate) fn reply(line: Bytes) -> Self {
        Effects {
            reply: Some(line),
            ..Effects::default()
        }
    }

    pub(crate) fn with_event(mut self, to: Audience, line: Bytes) -> Self {
        self.event = Some(Delivery { to, line });
        self
    }
}
