//! Private rooms' rules, one set for the cluster: every privacy change (a room made, `mode` with
//! its key, `op`, `invite`, `kick`) is published by the node that made it on the room's rules
//! subject, a JSON [`RuleChange`] for the nodes only, and every node applies every change to its
//! own copy of the room in stream order ([`State::apply_rule`]), those stored before it started
//! too. The key travels in these records and never in a client's line, as on one server.
//!
//! A rule is checked by the node a request arrives on, against its copy: a change made on another
//! node counts here once it is read from the stream (milliseconds on a LAN). See PROTOCOL.md,
//! "Cluster mode", for what that window means.

use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use super::wire::{Names, Origin};
use crate::effects::Effects;
use crate::state::{RuleChange, State};

/// A change as stored on the stream.
pub fn encode(change: &RuleChange) -> Bytes {
    serde_json::to_vec(change)
        .expect("a rule change is plain data")
        .into()
}

/// A change read from the stream on the rules subject of `room_key`: applied here; what to
/// deliver to this node's users. A record that is not a change of that room (a
/// newer node's kind, a forged subject) changes nothing.
pub fn apply<M: Clone>(
    state: &mut State<M>,
    me: &str,
    room_key: &str,
    origin: &Origin,
    payload: &[u8],
    live: bool,
) -> Effects {
    let Ok(change) = serde_json::from_slice::<RuleChange>(payload) else {
        return Effects::default();
    };
    if lanchat_protocol::validate::name_key(&change.room) != room_key {
        return Effects::default();
    }
    let first = state.roster().first_rule(room_key);
    state.apply_rule(&change, origin.node == me, first, live)
}

/// A stream made before rules had their subject gets it (its other settings kept).
pub async fn add_rules_subject(
    js: &jetstream::Context,
    stream: &mut stream::Stream,
    names: &Names,
) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| {
        format!(
            "cannot add the rules subject to the JetStream stream {}: {e}",
            names.stream
        )
    };
    let mut config = stream.info().await.map_err(|e| failed(&e))?.config.clone();
    let wanted = names.stream_subjects();
    if wanted.iter().all(|s| config.subjects.contains(s)) {
        return Ok(());
    }
    for subject in wanted {
        if !config.subjects.contains(&subject) {
            config.subjects.push(subject);
        }
    }
    js.update_stream(&config).await.map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
#[path = "privacy_tests.rs"]
mod tests;
