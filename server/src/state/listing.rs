//! `rooms`, a page at a time: the public rooms with members and the default room, read from the
//! listed-rooms index, and the private rooms the asker is in, merged in key order; in cluster
//! mode also the public rooms with members on other nodes (the roster, in key order too). Reads
//! the page (and one room past it) and the asker's own rooms, never every room held.

use std::ops::Bound;

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{ReplyData, RequestId, RoomInfo};

use super::{ok_line, Effects, Registered, State};

impl<M: Clone> State<M> {
    /// A page of the public rooms with members, plus the default room and the private rooms
    /// `who` is in, sorted by key: at most `limit` of those whose key sorts after `after`'s, and
    /// `next` when more follow. Reads only the page (and one room past it) and `who`'s own
    /// rooms, however many rooms are held.
    pub fn rooms(
        &self,
        who: &Registered,
        re: Option<&RequestId>,
        after: Option<&str>,
        limit: usize,
    ) -> Effects {
        let start = match after {
            Some(name) => Bound::Excluded(name_key(name)),
            None => Bound::Unbounded,
        };
        let after_key = match &start {
            Bound::Excluded(key) => Some(key.as_str()),
            _ => None,
        };
        let own = self.own_private_rooms(who, after_key);
        // Cluster mode: a room made private on another node is listed to its members only (they
        // are in `own` when it is private here too, else in `listed`).
        let mine = &self.user(who).rooms;
        let shown = |key: &str| !self.remote.is_private(key) || mine.contains(key);
        // Rooms with members on other nodes; a room private here is no room to others.
        let remote = self
            .remote
            .rooms_after(after_key)
            .filter(|key| self.rooms.get(*key).is_some_and(Self::listable) && shown(key))
            .take(limit + 1);
        let mut keys: Vec<&str> = self
            .listed
            .range::<str, _>((start.as_ref().map(String::as_str), Bound::Unbounded))
            .map(|k| &**k)
            .filter(|key| shown(key))
            .take(limit + 1)
            .chain(own)
            .chain(remote)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut page = keys.into_iter().filter_map(|key| self.rooms.get(key));
        let rooms: Vec<RoomInfo> = page
            .by_ref()
            .take(limit)
            .map(|r| RoomInfo {
                name: r.name.clone(),
                members: r.members.len() + self.remote.count(&r.key),
                topic: r.topic.clone(),
            })
            .collect();
        let next = match page.next() {
            Some(_) => rooms.last().map(|r| r.name.clone()),
            None => None,
        };
        Effects::reply(ok_line(re, ReplyData::Rooms { rooms, next }))
    }
}
