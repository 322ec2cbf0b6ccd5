//! What the state keeps and forgets: rooms made and forgotten (`--max-rooms`, the rooms kept
//! without members, oldest first), the count of rooms with members, and the memory budget of all
//! history together (`--history-memory`). The rules in the parent module call these; nothing
//! here makes an effect.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lanchat_protocol::validate::{lookalike_keys, name_key};

use super::{Room, RoomKey, State};
use crate::history::{RoomHistory, StoredMessage};

impl<M> Room<M> {
    /// Whether the room holds something worth keeping without members: history, a topic, or
    /// privacy (a private room forgotten could be made again, public, by anyone). Operators
    /// alone are not kept: a public room with nothing in it is forgotten with them.
    pub(super) fn keeps_something(&self) -> bool {
        !self.history.is_empty() || !self.topic.is_empty() || self.privacy.is_private()
    }
}

impl<M: Clone> State<M> {
    /// Hold at most `max_rooms` rooms (the default room included): beyond, the room that has been
    /// without members longest is forgotten, and when every room has members a new one is refused.
    pub fn with_max_rooms(mut self, max_rooms: usize) -> Self {
        self.max_rooms = max_rooms.max(1);
        self
    }

    /// Hold at most `bytes` of history in memory, all rooms together: beyond, the oldest messages
    /// of the rooms without members go first (the room that has been idle longest first), then
    /// the oldest of the room being written to. (With `--data-dir` they stay on disk.)
    pub fn with_history_memory(mut self, bytes: usize) -> Self {
        self.max_history_bytes = bytes;
        self
    }

    /// Forget a room once it has been without members for `idle` (see [`State::expire_idle`]).
    /// Only for a server with a data directory: the room's history and topic stay on disk and
    /// come back when it is named again. Without one, forgetting would lose them.
    pub fn with_room_idle(mut self, idle: Duration) -> Self {
        self.room_idle = Some(idle);
        self
    }

    /// One expiry pass at `now`, made every few seconds: forget at most `max` of the rooms that
    /// have been without members for the `--room-idle` time, longest idle first. Reads only the
    /// head of the idle set, never all rooms. Returns how many it forgot.
    ///
    /// The rules take no clock: each pass records the tick it saw, and the rooms idle since
    /// before a pass at least `room_idle` old have been idle that long (so a room is forgotten
    /// between `room_idle` and `room_idle` plus one pass interval after its last member left).
    pub fn expire_idle(&mut self, now: Instant, max: usize) -> usize {
        let Some(idle_for) = self.room_idle else {
            return 0;
        };
        // A pass that saw no change since the last adds nothing: the older one says more.
        if self
            .passes
            .back()
            .is_none_or(|(_, tick)| *tick != self.tick)
        {
            self.passes.push_back((now, self.tick));
        }
        let old_enough = |(at, _): &(Instant, u64)| now.duration_since(*at) >= idle_for;
        while self.passes.get(1).is_some_and(old_enough) {
            self.passes.pop_front();
        }
        let Some(&(_, horizon)) = self.passes.front().filter(|p| old_enough(p)) else {
            return 0;
        };
        let mut forgotten = 0;
        while forgotten < max
            && self
                .idle
                .first()
                .is_some_and(|(since, _)| *since <= horizon)
        {
            self.forget_longest_idle();
            forgotten += 1;
        }
        forgotten
    }

    /// Whether the room called `name` is held in memory.
    pub fn holds_room(&self, name: &str) -> bool {
        self.rooms.contains_key(name_key(name).as_str())
    }

    /// Bring back a room read from disk, unless it is held already (made or restored while it
    /// was being read: what is in memory is then at least as new). Kept without members until
    /// someone joins; false when it was not restored.
    pub fn restore_room(
        &mut self,
        name: &str,
        messages: Vec<StoredMessage>,
        topic: String,
    ) -> bool {
        if self.holds_room(name) {
            return false;
        }
        for message in messages {
            self.restore_message(name, message);
        }
        if !topic.is_empty() {
            self.restore_topic(name, topic);
        }
        self.holds_room(name)
    }

    /// Memory held by history, all rooms together.
    #[cfg(test)]
    pub(crate) fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// After a room's history changed by (added, freed): keep the total, and trim history until
    /// it fits the budget again.
    pub(super) fn kept(&mut self, key: &RoomKey, (added, freed): (usize, usize)) {
        self.history_bytes = self.history_bytes + added - freed;
        while self.history_bytes > self.max_history_bytes {
            // The idle rooms first, oldest first; only a few are looked at, so that rooms kept for
            // their topic alone cannot make this a scan.
            let victim = self
                .idle
                .iter()
                .take(8)
                .map(|(_, k)| k.clone())
                .find(|k| self.rooms.get(k).is_some_and(|r| !r.history.is_empty()))
                .unwrap_or_else(|| key.clone());
            let Some(room) = self.rooms.get_mut(&victim) else {
                break;
            };
            let Some(freed) = room.history.pop_oldest() else {
                break;
            };
            self.history_bytes -= freed;
            if room.members.is_empty() && !room.keeps_something() {
                if let Some(since) = room.idle_since {
                    self.idle.remove(&(since, victim.clone()));
                }
                self.forget_room(&victim);
            }
        }
    }

    /// Rooms held in memory, with or without members.
    #[cfg(test)]
    pub(crate) fn rooms_held(&self) -> usize {
        self.rooms.len()
    }

    /// The room called `name`, made if need be: `None` when it would be one room too many and
    /// every room held has members.
    pub(super) fn room_entry(&mut self, name: &str) -> Option<&mut Room<M>> {
        let key: RoomKey = name_key(name).into();
        if !self.rooms.contains_key(&key) {
            if self.rooms.len() >= self.max_rooms && !self.forget_longest_idle() {
                return None;
            }
            self.tick += 1;
            let skeletons = lookalike_keys(name);
            self.claim_room_skeletons(&skeletons, &key);
            let room = Room {
                key: key.clone(),
                name: name.to_owned(),
                skeletons,
                topic: String::new(),
                members: HashMap::new(),
                history: RoomHistory::new(self.history_len),
                idle_since: None,
                privacy: Default::default(),
            };
            self.rooms.insert(key.clone(), room);
            if *key != *name_key(&self.default_room) {
                // Made without a member (a restored room) or about to get one (a join): the
                // join takes it out of the idle set again.
                self.mark_idle(&key);
            }
        }
        self.rooms.get_mut(&key)
    }

    pub(super) fn mark_idle(&mut self, key: &RoomKey) {
        self.tick += 1;
        if let Some(room) = self.rooms.get_mut(key) {
            if let Some(old) = room.idle_since.replace(self.tick) {
                self.idle.remove(&(old, key.clone()));
            }
            self.idle.insert((self.tick, key.clone()));
        }
    }

    /// Forget the room that has been without members longest; false if there is none.
    pub(super) fn forget_longest_idle(&mut self) -> bool {
        match self.idle.pop_first() {
            Some((_, key)) => {
                if let Some(room) = self.forget_room(&key) {
                    self.history_bytes -= room.history.bytes();
                }
                true
            }
            None => false,
        }
    }

    /// After `key` lost a member: keep the count of active rooms, and forget the room if it is
    /// empty and holds nothing, or queue it to be forgotten first when room is needed.
    /// Cluster mode: the last of another node's members left `room_key`; with none here either
    /// and nothing to keep, the room is forgotten, as [`State::left`] forgets it on one server.
    pub fn remote_left(&mut self, room_key: &str) {
        let Some(room) = self.rooms.get(room_key) else {
            return;
        };
        let key = room.key.clone();
        let unused = room.members.is_empty()
            && !room.keeps_something()
            && self.remote.count(room_key) == 0
            && *key != *name_key(&self.default_room);
        if unused {
            self.listed.remove(&key);
            self.forget_room(&key);
        }
    }

    pub(super) fn left(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if !room.members.is_empty() {
            return;
        }
        self.active -= 1;
        if **key == *name_key(&self.default_room) {
            return;
        }
        self.listed.remove(key);
        // Cluster mode: a room other nodes' members are in is kept, its operators with it.
        if !room.keeps_something() && self.remote.count(key) == 0 {
            self.forget_room(key);
        } else {
            self.mark_idle(key);
        }
    }
}
