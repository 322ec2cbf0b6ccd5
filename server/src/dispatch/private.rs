//! The requests of private rooms (`mode`, `invite`, `kick`, `op`) from decode to rule: the check
//! that needs no state, then the rule in `state/privacy.rs`. Charged to the events budget like
//! `join` and `topic` (they make the server tell others), by the caller.

use lanchat_protocol::validate::{check_room, check_short_text};
use lanchat_protocol::{Command, RequestId, MAX_TOPIC_CHARS};

use crate::effects::Effects;
use crate::outbox::Outbox;
use crate::state::{Refusal, Registered, State};

/// The checks that need no state: the room's name, and a kick's reason (as long as a topic).
pub(super) fn check(command: &Command) -> Result<(), Refusal> {
    match command {
        Command::Mode(m) => check_room(&m.room),
        Command::Invite { room, .. } | Command::Op { room, .. } => check_room(room),
        Command::Kick { room, reason, .. } => {
            check_room(room)?;
            match reason {
                Some(r) => check_short_text("reason", r, MAX_TOPIC_CHARS),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The rule of one private-room request.
pub(super) fn apply(
    st: &mut State<Outbox>,
    who: &Registered,
    re: Option<&RequestId>,
    command: Command,
) -> Result<Effects, Refusal> {
    match command {
        Command::Mode(request) => st.mode(who, re, request),
        Command::Invite { room, nick } => st.invite(who, re, &room, &nick),
        Command::Kick { room, nick, reason } => st.kick(who, re, &room, &nick, reason),
        Command::Op { room, nick } => st.op(who, re, &room, &nick),
        other => unreachable!("not a private-room request: {}", other.name()),
    }
}
