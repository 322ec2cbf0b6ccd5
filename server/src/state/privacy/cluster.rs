//! Cluster mode: the privacy changes of every node, read from the stream in its order, applied to
//! this node's copy of each room (`cluster::privacy` reads them). Every node applies every change,
//! its own too (it applied them when made, and again in stream order, so that two changes made at
//! once on two nodes end the same way everywhere: the later in the stream wins). Joins consume
//! invitations on every node alike.

use lanchat_protocol::validate::{name_key, name_key_ref};

use super::{invite_line, kick_line, Rule, RuleChange};
use crate::effects::{Audience, Delivery, Effects};
use crate::state::{SessionId, State};

impl<M: Clone> State<M> {
    /// Apply `change` to the room it names (held from here on). `mine`: this node made it.
    /// `first`: the first of the room's changes this node reads; it starts from the settings the
    /// change carries. `live`: stored after this node started; only then are its users told (an
    /// invitee here, the members here of a room someone was kicked from). Returns what to
    /// deliver here (nothing to persist: a node of a cluster has no data directory).
    pub fn apply_rule(
        &mut self,
        change: &RuleChange,
        mine: bool,
        first: bool,
        live: bool,
    ) -> Effects {
        let default_room = name_key(&self.default_room);
        let made_first = match &change.rule {
            Rule::Made { nick } if live => !self.others_in(&name_key(&change.room), nick),
            Rule::Made { nick } => !self.remote.replayed_others(&name_key(&change.room), nick),
            _ => false,
        };
        let Some(entry) = self.room_entry(&change.room) else {
            return Effects::default();
        };
        let key = entry.key.clone();
        let privacy = &mut entry.privacy;
        if first && !matches!(change.rule, Rule::Made { .. }) {
            privacy.take_settings(&change.settings);
        }
        match &change.rule {
            // A room made again after everyone left starts afresh; one made on two nodes at
            // once was made by the first in the stream, whose members the later maker finds. A
            // private room is kept on every node while it has rules, so a making of it comes
            // from a node that dropped it (`--max-rooms`): the rules stay.
            Rule::Made { .. } if made_first && !privacy.is_private() => {
                privacy.take_settings(&change.settings)
            }
            Rule::Made { .. } => {}
            Rule::Op { nick } => {
                privacy.operators.insert(name_key(nick));
            }
            Rule::Mode {
                invite_only,
                key,
                topic_lock,
            } => privacy.set_modes(*invite_only, key.as_ref(), *topic_lock),
            Rule::Invite { nick, .. } => privacy.invite(name_key(nick)),
            Rule::Kick { nick, .. } => {
                privacy.operators.remove(&name_key(nick));
            }
        }
        // As `mode` keeps it: public rooms with members here, and the default room.
        let listed = (!privacy.is_private() && !entry.members.is_empty()) || *key == *default_room;
        match listed {
            true => self.listed.insert(key.clone()),
            false => self.listed.remove(&key),
        };
        if let (Rule::Kick { nick, .. }, false) = (&change.rule, live) {
            self.remote.replayed_kick(&key, nick);
        }
        if mine || !live {
            return Effects::default();
        }
        let event = match &change.rule {
            Rule::Invite { nick, by } => {
                self.nicks
                    .get(name_key_ref(nick).as_ref())
                    .map(|id| Delivery {
                        to: Audience::User(*id),
                        line: invite_line(&change.room, by),
                    })
            }
            Rule::Kick { nick, by, reason } => {
                Some(self.kicked_elsewhere(&key, &change.room, nick, by, reason.clone()))
            }
            _ => None,
        };
        Effects {
            event,
            ..Effects::default()
        }
    }

    /// Whether someone other than `nick` is in the room `room_key` at this point of the stream:
    /// another node's member, or one of this node's whose join has come back from the stream.
    fn others_in(&self, room_key: &str, nick: &str) -> bool {
        let folded = name_key(nick);
        let arriving = self.remote.still_arriving(room_key);
        let here = self.rooms.get(room_key).is_some_and(|room| {
            room.members.keys().any(|id| {
                !arriving.is_some_and(|a| a.contains(id))
                    && self
                        .users
                        .get(id)
                        .is_some_and(|u| name_key(&u.nick) != folded)
            })
        });
        here || self
            .remote
            .members(room_key)
            .any(|m| name_key(&m.nick) != folded)
    }

    /// A kick made on another node: the member is removed here, whether this node holds their
    /// session or knows them as another node's; the room's members here, the kicked one
    /// included, get the `leave`.
    fn kicked_elsewhere(
        &mut self,
        key: &crate::effects::RoomKey,
        room: &str,
        nick: &str,
        by: &str,
        reason: Option<String>,
    ) -> Delivery {
        let members: Vec<SessionId> = self
            .rooms
            .get(key)
            .map(|r| r.members.keys().copied().collect())
            .unwrap_or_default();
        let here = self
            .nicks
            .get(name_key_ref(nick).as_ref())
            .copied()
            .filter(|id| members.contains(id));
        match here {
            Some(id) => self.remove_member(key, id),
            None => {
                self.remote.kicked(key, nick);
                self.remote_left(key);
            }
        }
        Delivery {
            to: Audience::Users(members),
            line: kick_line(room, nick, by, reason),
        }
    }

    /// A join read from the stream (any node's, this one's too): the joiner's invitation to the
    /// room, if any, is used, as on the node that admitted them.
    pub fn invitation_used(&mut self, room_key: &str, nick: &str) {
        if let Some(entry) = self.rooms.get_mut(room_key) {
            let privacy = &mut entry.privacy;
            if !privacy.is_operator(nick) {
                let folded = name_key(nick);
                privacy.invitations.retain(|n| *n != folded);
            }
        }
    }
}

#[cfg(test)]
impl<M: Clone> State<M> {
    /// A held room's privacy, key included.
    pub fn settings_of(&self, room: &str) -> Option<super::RoomSettings> {
        let entry = self.rooms.get(name_key_ref(room).as_ref())?;
        Some(entry.privacy.settings())
    }

    /// How many invitations a held room keeps.
    pub fn invitations_of(&self, room: &str) -> usize {
        self.rooms
            .get(name_key_ref(room).as_ref())
            .map_or(0, |r| r.privacy.invitations.len())
    }
}
