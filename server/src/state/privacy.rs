//! Private rooms (issue 15): a room's operators, its modes (invite-only, key, topic lock) and its
//! invitations; who may join, who may read, and the requests of operators (`mode`, `invite`,
//! `kick`, `op`).
//!
//! A room is private when it is invite-only or has a key. A non-member learns nothing of a private
//! room from `who`, `history`, a `topic` reading or `rooms`: each answers exactly as for a room
//! that does not exist. Only `join` tells (`not_invited`, `bad_key`), as it must. Operators are
//! held by folded nick: the user who makes a room by joining it is its first operator, and a room
//! that has none (the default room, rooms older than this rule) never gets one by itself.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use lanchat_protocol::validate::{name_key, name_key_ref};
use lanchat_protocol::{
    ErrorCode, InviteEvent, LeaveEvent, ModeEvent, ModeRequest, ReplyData, RequestId, RoomModes,
    ServerFrame,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{
    ok_line, refuse, Audience, Effects, Persist, Refusal, Registered, Room, RoomKey, State,
};
use crate::state::SessionId;

/// Invitations a room keeps at most; beyond, the oldest is dropped.
pub const MAX_INVITATIONS: usize = 100;

/// What of a room's privacy survives a restart (with the topic, in `topics.json`). Invitations do
/// not: they are kept in memory until used or the room is forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSettings {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub invite_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub topic_lock: bool,
    /// Operators, by folded nick.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<String>,
}

impl RoomSettings {
    pub fn is_default(&self) -> bool {
        *self == RoomSettings::default()
    }
}

/// Cluster mode: one change to a room's privacy, as every node applies it to its own copy of the
/// room, in the stream's order (`privacy/cluster.rs`). One server makes them and drops them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleChange {
    /// The room, as the node that made the change spells it.
    pub room: String,
    pub rule: Rule,
    /// The room's privacy after the change, key included, as that node saw it: a node that reads
    /// a room's changes from the middle (the stream keeps the last `--history` of them) starts
    /// from it.
    pub settings: RoomSettings,
}

/// What changed (nicks as spelt; they are folded where compared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Rule {
    /// The room was made by `nick` joining it: its first operator.
    Made {
        nick: String,
    },
    /// The modes a `mode` request set (absent: left as they were).
    Mode {
        invite_only: Option<bool>,
        key: Option<KeyChange>,
        topic_lock: Option<bool>,
    },
    Op {
        nick: String,
    },
    Invite {
        nick: String,
        by: String,
    },
    Kick {
        nick: String,
        by: String,
        reason: Option<String>,
    },
}

/// A `mode` request's change of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyChange {
    Set(String),
    Clear,
}

/// A room's privacy in memory.
#[derive(Debug, Default)]
pub(super) struct Privacy {
    invite_only: bool,
    key: Option<String>,
    topic_lock: bool,
    /// Folded nicks.
    operators: BTreeSet<String>,
    /// Folded nicks invited and not yet joined, oldest first.
    invitations: VecDeque<String>,
}

impl Privacy {
    pub(super) fn is_private(&self) -> bool {
        self.invite_only || self.key.is_some()
    }

    /// Whether the user called `nick` is an operator.
    pub(super) fn is_operator(&self, nick: &str) -> bool {
        !self.operators.is_empty() && self.operators.contains(name_key_ref(nick).as_ref())
    }

    pub(super) fn settings(&self) -> RoomSettings {
        RoomSettings {
            invite_only: self.invite_only,
            key: self.key.clone(),
            topic_lock: self.topic_lock,
            ops: self.operators.iter().cloned().collect(),
        }
    }

    fn modes(&self, room: &str) -> RoomModes {
        RoomModes {
            room: room.to_owned(),
            invite_only: self.invite_only,
            has_key: self.key.is_some(),
            topic_lock: self.topic_lock,
        }
    }

    /// Start from `settings` (a change read from the stream; invitations are kept).
    fn take_settings(&mut self, settings: &RoomSettings) {
        self.invite_only = settings.invite_only;
        self.key.clone_from(&settings.key);
        self.topic_lock = settings.topic_lock;
        self.operators = settings.ops.iter().cloned().collect();
    }

    /// Invite the folded nick `folded` (once; the oldest invitation goes beyond the limit).
    fn invite(&mut self, folded: String) {
        if !self.invitations.contains(&folded) {
            if self.invitations.len() >= MAX_INVITATIONS {
                self.invitations.pop_front();
            }
            self.invitations.push_back(folded);
        }
    }

    /// Apply a `mode` change.
    fn set_modes(
        &mut self,
        invite_only: Option<bool>,
        key: Option<&KeyChange>,
        lock: Option<bool>,
    ) {
        if let Some(on) = invite_only {
            self.invite_only = on;
        }
        match key {
            Some(KeyChange::Set(k)) => self.key = Some(k.clone()),
            Some(KeyChange::Clear) => self.key = None,
            None => {}
        }
        if let Some(on) = lock {
            self.topic_lock = on;
        }
    }

    /// May the user called `nick` (not a member yet) join with `key`? An operator always may; an
    /// invitation admits once, whatever the key; otherwise invite-only refuses, and a key must be
    /// given and match (compared in constant time).
    fn admit(&mut self, nick: &str, key: Option<&str>, room: &str) -> Result<(), Refusal> {
        let folded = name_key(nick);
        if self.operators.contains(&folded) {
            return Ok(());
        }
        if let Some(at) = self.invitations.iter().position(|n| *n == folded) {
            self.invitations.remove(at);
            return Ok(());
        }
        if self.invite_only {
            return refuse(
                ErrorCode::NotInvited,
                format!("\"{room}\" is invite-only; ask an operator for an invitation"),
            );
        }
        if let Some(expected) = &self.key {
            let given = key.unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return refuse(
                    ErrorCode::BadKey,
                    format!("\"{room}\" needs a key, and this is not it"),
                );
            }
        }
        Ok(())
    }
}

impl<M: Clone> State<M> {
    /// Before `who` joins `room` (not yet a member): refused when the room is private and they
    /// may not come in. Returns whether the join makes the room, so that its maker becomes its
    /// first operator (see [`State::made_by`]).
    pub(super) fn admit(
        &mut self,
        who: &Registered,
        room: &str,
        key: Option<&str>,
    ) -> Result<bool, Refusal> {
        let nick = self.user(who).nick.clone();
        let folded = name_key_ref(room);
        // Cluster mode: a room other nodes' members are in is made already.
        let made = self.remote.count(folded.as_ref()) == 0;
        match self.rooms.get_mut(folded.as_ref()) {
            None => Ok(made),
            Some(entry) if entry.members.contains_key(&who.id) => Ok(false),
            Some(entry) => entry.privacy.admit(&nick, key, room).map(|()| false),
        }
    }

    /// `who` just made `room` by joining it: its first operator, saved (with a data directory)
    /// so that it outlives a restart and the room being forgotten from memory.
    pub(super) fn made_by(&mut self, who: &Registered, room: &str) -> Option<Persist> {
        let nick = name_key(&self.user(who).nick);
        let entry = self.rooms.get_mut(name_key_ref(room).as_ref())?;
        entry.privacy.operators.insert(nick);
        Some(Self::persist_room(entry))
    }

    /// Cluster mode: the change that tells the other nodes who made `room` (see
    /// [`State::made_by`]).
    pub(super) fn made_rule(&self, who: &Registered, room: &str) -> Option<RuleChange> {
        let entry = self.rooms.get(name_key_ref(room).as_ref())?;
        Some(RuleChange {
            room: entry.name.clone(),
            rule: Rule::Made {
                nick: self.user(who).nick.clone(),
            },
            settings: entry.privacy.settings(),
        })
    }

    /// The room called `name` if `id` may read it: it is public, or `id` is a member. A private
    /// room is `None` to everyone else, exactly as a room that does not exist.
    pub(super) fn readable(&self, id: SessionId, name: &str) -> Option<&Room<M>> {
        self.rooms
            .get(name_key_ref(name).as_ref())
            .filter(|r| !r.privacy.is_private() || r.members.contains_key(&id))
    }

    /// Whether a room with members belongs in the `rooms` listing: public rooms only.
    pub(super) fn listable(room: &Room<M>) -> bool {
        !room.privacy.is_private()
    }

    /// The private rooms `who` is in whose keys sort after `after`, in key order: a member sees
    /// them in `rooms` (at most `MAX_ROOMS_PER_SESSION` of them, so no scan of all rooms).
    pub(super) fn own_private_rooms(&self, who: &Registered, after: Option<&str>) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .user(who)
            .rooms
            .iter()
            .filter(|k| after.is_none_or(|a| &***k > a))
            .filter(|k| self.rooms.get(*k).is_some_and(|r| r.privacy.is_private()))
            .map(|k| &**k)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Bring back a room's privacy read from disk (at start, or with the room itself).
    pub fn restore_settings(&mut self, room: &str, settings: RoomSettings) {
        if settings.is_default() {
            return;
        }
        if let Some(entry) = self.room_entry(room) {
            let RoomSettings {
                invite_only,
                key,
                topic_lock,
                ops,
            } = settings;
            entry.privacy.invite_only = invite_only;
            entry.privacy.key = key;
            entry.privacy.topic_lock = topic_lock;
            entry.privacy.operators = ops.into_iter().collect();
        }
    }

    /// May `who` set `room`'s topic? Not when the topic is locked and they are no operator.
    pub(super) fn may_set_topic(&self, who: &Registered, room: &Room<M>) -> Result<(), Refusal> {
        if room.privacy.topic_lock && !room.privacy.is_operator(&self.user(who).nick) {
            return refuse(
                ErrorCode::NotOperator,
                format!("the topic of \"{}\" is locked to its operators", room.name),
            );
        }
        Ok(())
    }

    /// The room `who` is a member of, and whether they are one of its operators. A non-member is
    /// told `not_in_room`, as for a room that does not exist.
    fn membership(&self, who: &Registered, room: &str) -> Result<(&Room<M>, bool), Refusal> {
        let Some(entry) = self
            .rooms
            .get(name_key_ref(room).as_ref())
            .filter(|r| r.members.contains_key(&who.id))
        else {
            return refuse(ErrorCode::NotInRoom, format!("you are not in \"{room}\""));
        };
        let op = entry.privacy.is_operator(&self.user(who).nick);
        Ok((entry, op))
    }

    /// [`State::membership`] for a request only operators may make.
    fn operator_of(&self, who: &Registered, room: &str) -> Result<&Room<M>, Refusal> {
        match self.membership(who, room)? {
            (entry, true) => Ok(entry),
            (entry, false) => refuse(
                ErrorCode::NotOperator,
                format!("only operators of \"{}\" may do this", entry.name),
            ),
        }
    }

    /// The member of `room` called `nick`.
    fn member_called(&self, room: &Room<M>, nick: &str) -> Result<SessionId, Refusal> {
        self.nicks
            .get(name_key_ref(nick).as_ref())
            .copied()
            .filter(|id| room.members.contains_key(id))
            .map_or_else(
                || {
                    refuse(
                        ErrorCode::NoSuchNick,
                        format!("nobody called \"{nick}\" is in \"{}\"", room.name),
                    )
                },
                Ok,
            )
    }

    /// The member of `room` called `nick`: this node's session (`Some`) or, in cluster mode,
    /// another node's member (`None`); and the nick as spelt.
    fn member_anywhere(
        &self,
        room: &Room<M>,
        nick: &str,
    ) -> Result<(Option<SessionId>, String), Refusal> {
        match self.member_called(room, nick) {
            Ok(id) => Ok((Some(id), self.users[&id].nick.clone())),
            Err(refusal) => match self.remote.member_called(&room.key, nick) {
                Some(member) => Ok((None, member.nick.clone())),
                None => Err(refusal),
            },
        }
    }

    /// Take session `id` out of the room `key` (kicked).
    fn remove_member(&mut self, key: &RoomKey, id: SessionId) {
        if let Some(entry) = self.rooms.get_mut(key) {
            entry.members.remove(&id);
        }
        if let Some(user) = self.users.get_mut(&id) {
            user.rooms.remove(key);
        }
        self.left(key);
    }

    /// What to persist of a room after its privacy changed: the whole entry, topic included.
    fn persist_room(room: &Room<M>) -> Persist {
        Persist::Topic {
            room_key: room.key.clone(),
            room: room.name.clone(),
            topic: room.topic.clone(),
            settings: room.privacy.settings(),
        }
    }

    /// `mode`: any member reads the modes; only operators change them. Members are told of a
    /// change with a `mode` event (whether there is a key, never the key).
    pub fn mode(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        request: ModeRequest,
    ) -> Result<Effects, Refusal> {
        let changes = request.changes();
        let entry = match changes {
            true => self.operator_of(who, &request.room)?,
            false => self.membership(who, &request.room)?.0,
        };
        if !changes {
            let modes = entry.privacy.modes(&entry.name);
            return Ok(Effects::reply(ok_line(re, ReplyData::Mode(modes))));
        }
        let key = entry.key.clone();
        let by = self.user(who).nick.clone();
        let default_room = *key == *name_key(&self.default_room);
        let entry = self.rooms.get_mut(&key).expect("looked up above");
        let privacy = &mut entry.privacy;
        let key_change = request
            .key
            .map(|k| k.map_or(KeyChange::Clear, KeyChange::Set));
        privacy.set_modes(request.invite_only, key_change.as_ref(), request.topic_lock);
        let rule = RuleChange {
            room: entry.name.clone(),
            rule: Rule::Mode {
                invite_only: request.invite_only,
                key: key_change,
                topic_lock: request.topic_lock,
            },
            settings: privacy.settings(),
        };
        let modes = privacy.modes(&entry.name);
        let listed = !privacy.is_private() || default_room;
        let line = ServerFrame::Mode(ModeEvent {
            room: entry.name.clone(),
            by,
            invite_only: modes.invite_only,
            has_key: modes.has_key,
            topic_lock: modes.topic_lock,
        })
        .encode_line();
        let persist = Self::persist_room(entry);
        // The listing holds public rooms with members: a room made private leaves it at once.
        match listed {
            true => self.listed.insert(key.clone()),
            false => self.listed.remove(&key),
        };
        Ok(Effects {
            reply: Some(ok_line(re, ReplyData::Mode(modes))),
            event: Some(super::Delivery {
                to: Audience::Room {
                    key,
                    except: who.id,
                },
                line,
            }),
            persist: Some(persist),
            rule: Some(Box::new(rule)),
        })
    }

    /// `invite`: an operator lets the user called `nick` (online) join once; they are told.
    pub fn invite(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        room: &str,
        nick: &str,
    ) -> Result<Effects, Refusal> {
        let entry = self.operator_of(who, room)?;
        // Cluster mode: the invitee may be another node's user (one in a room there).
        let Some((target, target_nick)) = self
            .nicks
            .get(name_key_ref(nick).as_ref())
            .and_then(|id| Some((Some(*id), self.users.get(id)?.nick.clone())))
            .or_else(|| Some((None, self.remote.user_called(nick)?)))
        else {
            return refuse(
                ErrorCode::NoSuchNick,
                format!("nobody is called \"{nick}\""),
            );
        };
        let (key, name) = (entry.key.clone(), entry.name.clone());
        let by = self.user(who).nick.clone();
        let line = invite_line(&name, &by);
        let privacy = &mut self.rooms.get_mut(&key).expect("looked up above").privacy;
        privacy.invite(name_key(&target_nick));
        let rule = RuleChange {
            room: name.clone(),
            rule: Rule::Invite {
                nick: target_nick.clone(),
                by,
            },
            settings: privacy.settings(),
        };
        let reply = ok_line(
            re,
            ReplyData::Invite {
                room: name,
                nick: target_nick,
            },
        );
        let mut effects = Effects::reply(reply);
        if let Some(target) = target {
            effects = effects.with_event(Audience::User(target), line);
        }
        effects.rule = Some(Box::new(rule));
        Ok(effects)
    }

    /// `op`: an operator makes a member an operator too.
    pub fn op(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        room: &str,
        nick: &str,
    ) -> Result<Effects, Refusal> {
        let entry = self.operator_of(who, room)?;
        let (_, target_nick) = self.member_anywhere(entry, nick)?;
        let key = entry.key.clone();
        let entry = self.rooms.get_mut(&key).expect("looked up above");
        entry.privacy.operators.insert(name_key(&target_nick));
        let rule = RuleChange {
            room: entry.name.clone(),
            rule: Rule::Op {
                nick: target_nick.clone(),
            },
            settings: entry.privacy.settings(),
        };
        let reply = ok_line(
            re,
            ReplyData::Op {
                room: entry.name.clone(),
                nick: target_nick,
            },
        );
        let mut effects = Effects::reply(reply);
        effects.persist = Some(Self::persist_room(entry));
        effects.rule = Some(Box::new(rule));
        Ok(effects)
    }

    /// `kick`: an operator removes a member. Everyone in the room, the member removed included,
    /// gets one `leave` event naming the operator (`kicked_by`): a client that does not know
    /// kicks still sees itself leave. A kicked operator is an operator no more.
    pub fn kick(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        room: &str,
        nick: &str,
        reason: Option<String>,
    ) -> Result<Effects, Refusal> {
        let entry = self.operator_of(who, room)?;
        // Cluster mode: the member may be another node's, which removes them (see
        // `privacy/cluster.rs`); forgotten here at once.
        let (target, target_nick) = self.member_anywhere(entry, nick)?;
        let (key, name) = (entry.key.clone(), entry.name.clone());
        let audience: Vec<SessionId> = entry
            .members
            .keys()
            .copied()
            .filter(|id| *id != who.id)
            .collect();
        let by = self.user(who).nick.clone();
        let reason = reason.filter(|r| !r.is_empty());
        let line = kick_line(&name, &target_nick, &by, reason.clone());
        let entry = self.rooms.get_mut(&key).expect("looked up above");
        let was_operator = entry.privacy.operators.remove(&name_key(&target_nick));
        let persist = was_operator.then(|| Self::persist_room(entry));
        let rule = RuleChange {
            room: name.clone(),
            rule: Rule::Kick {
                nick: target_nick.clone(),
                by,
                reason,
            },
            settings: entry.privacy.settings(),
        };
        match target {
            Some(target) => self.remove_member(&key, target),
            None => self.remote.kicked(&key, &target_nick),
        }
        let reply = ok_line(
            re,
            ReplyData::Kick {
                room: name,
                nick: target_nick,
            },
        );
        let mut effects = Effects::reply(reply).with_event(Audience::Users(audience), line);
        effects.persist = persist;
        effects.rule = Some(Box::new(rule));
        Ok(effects)
    }
}

/// The `invite` event an invitee gets.
fn invite_line(room: &str, by: &str) -> Bytes {
    ServerFrame::Invite(InviteEvent {
        room: room.to_owned(),
        by: by.to_owned(),
    })
    .encode_line()
}

/// The `leave` event of a kick, for everyone in the room, the member kicked included.
fn kick_line(room: &str, nick: &str, by: &str, reason: Option<String>) -> Bytes {
    ServerFrame::Leave(LeaveEvent {
        room: room.to_owned(),
        nick: nick.to_owned(),
        kicked_by: Some(by.to_owned()),
        reason,
    })
    .encode_line()
}

mod cluster;
