//! Names that look alike (issue 14, finding 9): the skeleton of every nick and of every room
//! held, so that a new nick or room cannot pass for one that exists. Nicks are still addressed
//! by their `name_key` (a `dm` to a lookalike finds nobody) and rooms still stored under it; a
//! skeleton is only ever compared. One entry per nick and per room held.

use lanchat_protocol::validate::{name_key_ref, skeleton_key};
use lanchat_protocol::ErrorCode;

use super::{refuse, Refusal, Room, RoomKey, SessionId, State};

impl<M: Clone> State<M> {
    /// Refuse `nick` (whose skeleton is `skeleton`) when it looks like the nick of a session other
    /// than `id`.
    pub(super) fn check_nick_lookalike(
        &self,
        nick: &str,
        skeleton: &str,
        id: SessionId,
    ) -> Result<(), Refusal> {
        let Some(other) = self
            .nick_skeletons
            .get(skeleton)
            .filter(|owner| **owner != id)
            .and_then(|owner| self.users.get(owner))
        else {
            return Ok(());
        };
        refuse(
            ErrorCode::NickTaken,
            format!("nick \"{nick}\" looks like the nick of \"{}\"", other.nick),
        )
    }

    /// Forget that `id` holds the nick skeleton `skeleton`.
    pub(super) fn release_nick_skeleton(&mut self, skeleton: &str, id: SessionId) {
        if self.nick_skeletons.get(skeleton) == Some(&id) {
            self.nick_skeletons.remove(skeleton);
        }
    }

    /// Refuse to make a room `room` that looks like a room held under another key. A room held
    /// under `room`'s own key (any case) is simply that room, and costs no skeleton.
    pub(super) fn check_room_lookalike(&self, room: &str) -> Result<(), Refusal> {
        if self.rooms.contains_key(name_key_ref(room).as_ref()) {
            return Ok(());
        }
        let Some(other) = self
            .room_skeletons
            .get(&skeleton_key(room))
            .and_then(|key| self.rooms.get(key))
        else {
            return Ok(());
        };
        refuse(
            ErrorCode::RoomInvalid,
            format!(
                "\"{room}\" looks like the room \"{}\"; join that one",
                other.name
            ),
        )
    }

    /// Claim the skeleton of a room being made, unless a room held already has it (two rooms
    /// restored from disk may look alike: both are kept, the first owns the skeleton).
    pub(super) fn claim_room_skeleton(&mut self, skeleton: &str, key: &RoomKey) {
        if !self.room_skeletons.contains_key(skeleton) {
            self.room_skeletons.insert(skeleton.to_owned(), key.clone());
        }
    }

    /// Stop holding the room `key`, and release its skeleton if it owns it.
    pub(super) fn forget_room(&mut self, key: &RoomKey) -> Option<Room<M>> {
        let room = self.rooms.remove(key)?;
        if self.room_skeletons.get(&room.skeleton) == Some(key) {
            self.room_skeletons.remove(&room.skeleton);
        }
        Some(room)
    }
}
