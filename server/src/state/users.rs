//! A registered user, and the rooms they are in.
//!
//! The rooms one user is in: a short list, not a hash set. A session is in at most
//! `MAX_ROOMS_PER_SESSION` (100) rooms and usually a handful, so a scan costs less than hashing,
//! and the list takes 24 bytes in every user and nothing at all once it is empty (a set kept 48,
//! and its table after the last room was left): memory per idle client (issue 17).

use lanchat_protocol::{Member, Status};

use super::RoomKey;

/// A registered user.
#[derive(Debug)]
pub(super) struct User<M> {
    pub(super) nick: String,
    /// The nick's lookalike keys (one or two), its entries in `State::nick_skeletons`.
    pub(super) skeletons: Vec<String>,
    pub(super) status: Status,
    pub(super) status_text: Option<String>,
    /// Keys of the rooms this user is in.
    pub(super) rooms: UserRooms,
    pub(super) mailbox: M,
}

impl<M> User<M> {
    /// Whether a DM to this user should tell the sender they are away or busy, and their status
    /// text if they set one (the `dm` reply's `away` and `away_text`, here and from other nodes).
    pub(super) fn away(&self) -> Option<Option<&str>> {
        matches!(self.status, Status::Away | Status::Busy).then_some(self.status_text.as_deref())
    }

    pub(super) fn member(&self) -> Member {
        Member {
            nick: self.nick.clone(),
            status: self.status,
            text: self.status_text.clone(),
            op: false,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct UserRooms(Vec<RoomKey>);

impl UserRooms {
    pub(super) fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|k| &**k == key)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Add `key` if it is not there yet.
    pub(super) fn insert(&mut self, key: RoomKey) {
        if !self.contains(&key) {
            self.0.push(key);
        }
    }

    /// Remove `key`; the list's memory goes with its last room.
    pub(super) fn remove(&mut self, key: &str) {
        if let Some(at) = self.0.iter().position(|k| &**k == key) {
            self.0.swap_remove(at);
        }
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, RoomKey> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a UserRooms {
    type Item = &'a RoomKey;
    type IntoIter = std::slice::Iter<'a, RoomKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_room_is_listed_once_and_the_last_one_out_frees_the_list() {
        let mut rooms = UserRooms::default();
        rooms.insert(Arc::from("lobby"));
        rooms.insert(Arc::from("rust"));
        rooms.insert(Arc::from("lobby"));
        assert_eq!(rooms.len(), 2);
        assert!(rooms.contains("rust") && !rooms.contains("go"));
        rooms.remove("lobby");
        rooms.remove("lobby");
        assert_eq!(rooms.iter().map(|k| &**k).collect::<Vec<_>>(), ["rust"]);
        rooms.remove("rust");
        assert_eq!((rooms.len(), rooms.0.capacity()), (0, 0));
    }
}
