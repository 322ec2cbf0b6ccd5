//! Names that look alike (issue 14, finding 9): the lookalike keys (TR39 skeletons, see
//! `lanchat_protocol::names`) of every nick and of every room held, so that a new nick or room
//! cannot pass for one that exists. Nicks are still addressed by their `name_key` (a `dm` to a
//! lookalike finds nobody) and rooms still stored under it; a skeleton is only ever compared. At
//! most two entries per nick and per room held.

use lanchat_protocol::validate::{lookalike_keys, name_key_ref};
use lanchat_protocol::ErrorCode;

use super::{refuse, Refusal, Room, RoomKey, SessionId, State};

impl<M: Clone> State<M> {
    /// Refuse `nick` (whose lookalike keys are `skeletons`) when it looks like the nick of a
    /// session other than `id`.
    pub(super) fn check_nick_lookalike(
        &self,
        nick: &str,
        skeletons: &[String],
        id: SessionId,
    ) -> Result<(), Refusal> {
        let Some(other) = skeletons
            .iter()
            .filter_map(|key| self.nick_skeletons.get(key))
            .find(|owner| **owner != id)
            .and_then(|owner| self.users.get(owner))
        else {
            return Ok(());
        };
        refuse(
            ErrorCode::NickTaken,
            format!("nick \"{nick}\" looks like the nick of \"{}\"", other.nick),
        )
    }

    /// Record that `id` holds a nick with these keys (checked by `check_nick_lookalike`).
    pub(super) fn claim_nick_skeletons(&mut self, skeletons: &[String], id: SessionId) {
        for key in skeletons {
            self.nick_skeletons.insert(key.clone(), id);
        }
    }

    /// Forget that `id` holds a nick with these keys.
    pub(super) fn release_nick_skeletons(&mut self, skeletons: &[String], id: SessionId) {
        for key in skeletons {
            if self.nick_skeletons.get(key) == Some(&id) {
                self.nick_skeletons.remove(key);
            }
        }
    }

    /// Refuse to make a room `room` that looks like a room held under another key. A room held
    /// under `room`'s own key (any case) is simply that room, and costs no skeleton.
    pub(super) fn check_room_lookalike(&self, room: &str) -> Result<(), Refusal> {
        if self.rooms.contains_key(name_key_ref(room).as_ref()) {
            return Ok(());
        }
        let Some(other) = lookalike_keys(room)
            .iter()
            .filter_map(|key| self.room_skeletons.get(key))
            .find_map(|owner| self.rooms.get(owner))
        else {
            return Ok(());
        };
        // A private room is not named: that would tell its name to anyone who guesses a lookalike.
        let message = match other.privacy.is_private() {
            true => format!("\"{room}\" looks like a room the server holds; choose another name"),
            false => format!(
                "\"{room}\" looks like the room \"{}\"; join that one",
                other.name
            ),
        };
        refuse(ErrorCode::RoomInvalid, message)
    }

    /// Claim the keys of a room being made, those no room held has already (two rooms restored
    /// from disk may look alike: both are kept, the first owns the keys they share).
    pub(super) fn claim_room_skeletons(&mut self, skeletons: &[String], key: &RoomKey) {
        for skeleton in skeletons {
            if !self.room_skeletons.contains_key(skeleton) {
                self.room_skeletons.insert(skeleton.clone(), key.clone());
            }
        }
    }

    /// Stop holding the room `key`, and release the keys it owns.
    pub(super) fn forget_room(&mut self, key: &RoomKey) -> Option<Room<M>> {
        let room = self.rooms.remove(key)?;
        for skeleton in &room.skeletons {
            if self.room_skeletons.get(skeleton) == Some(key) {
                self.room_skeletons.remove(skeleton);
            }
        }
        Some(room)
    }
}
