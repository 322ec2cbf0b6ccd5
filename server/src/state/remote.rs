//! Cluster mode's hold on the chat state: what the stream's events change here (history, topics,
//! the members other nodes hold) and whom they reach. Called under the chat lock by
//! `cluster::inbound`, in stream order.

use lanchat_protocol::validate::name_key;
use lanchat_protocol::Member;

use super::{Audience, RoomKey, SessionId, State};

/// Whether a user is away or busy, and their status text if they set one: `None` when they are
/// neither, `Some(None)` when they are with no text.
pub type Away = Option<Option<String>>;
use crate::cluster::Roster;

impl<M: Clone> State<M> {
    /// Room messages reach history from the stream only, in its order (see `say`).
    pub fn set_clustered(&mut self) {
        self.clustered = true;
    }

    /// What beacons count: users, and rooms with members. In cluster mode, the cluster's as far
    /// as this node knows it: another node's user counts while in a room, a room while any node's
    /// user is in it.
    pub fn beacon_counts(&self) -> (usize, usize) {
        let remote_only = self
            .remote
            .rooms_after(None)
            .filter(|key| self.rooms.get(*key).is_none_or(|r| r.members.is_empty()))
            .count();
        (
            self.users.len() + self.remote.users(),
            self.active + remote_only,
        )
    }

    /// The members other nodes hold.
    pub fn roster(&mut self) -> &mut Roster {
        &mut self.remote
    }

    /// Hold the room called `name` (made if need be, within `max_rooms`); its key.
    pub fn hold_room(&mut self, name: &str) -> Option<RoomKey> {
        self.room_entry(name).map(|r| r.key.clone())
    }

    /// The key this state uses for a room key, shared; `None` if the room is not held.
    pub fn room_key(&self, key: &str) -> Option<RoomKey> {
        self.rooms.get(key).map(|r| r.key.clone())
    }

    /// Who on this node receives a room's event from the stream: its members but `except`
    /// and those whose own join has not come back from the stream yet.
    pub fn room_audience(&self, key: RoomKey, except: SessionId) -> Audience {
        let Some(arriving) = self.remote.still_arriving(&key) else {
            return Audience::Room { key, except };
        };
        let ids = self
            .rooms
            .get(&key)
            .map(|room| {
                room.members
                    .keys()
                    .filter(|id| **id != except && !arriving.contains(id))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        Audience::Users(ids)
    }

    /// This node's sessions in any of `rooms`, each once.
    pub fn local_members_of(&self, rooms: &[String]) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = rooms
            .iter()
            .filter_map(|key| self.rooms.get(key.as_str()))
            .flat_map(|room| room.members.keys().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether a user of this node is called `nick` (folded alike).
    pub fn holds_nick(&self, nick: &str) -> bool {
        self.nicks.contains_key(name_key(nick).as_str())
    }

    /// The session called by the folded nick `nick_key`, and its away or busy text when away or
    /// busy (`Some(None)`: no text), for a `dm` from another node.
    pub fn dm_target(&self, nick_key: &str) -> Option<(SessionId, Away)> {
        let id = *self.nicks.get(nick_key)?;
        let user = self.users.get(&id)?;
        let away = user.away().map(|text| text.map(str::to_owned));
        Some((id, away))
    }

    /// This node's own members, room by room (key, members): its answer to another node's
    /// `members` request.
    pub fn local_account(&self) -> Vec<(String, Vec<Member>)> {
        self.rooms
            .values()
            .filter(|room| !room.members.is_empty())
            .map(|room| {
                let members = room
                    .members
                    .keys()
                    .filter_map(|id| self.users.get(id))
                    .map(|u| u.member())
                    .collect();
                (room.key.to_string(), members)
            })
            .collect()
    }
}
