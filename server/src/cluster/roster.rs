//! The members other nodes hold, room by room, as this node has learnt them: from the stream's
//! join, leave, nick, presence and quit events, from the answers to its `members` request at
//! start, and forgotten with their node when its heartbeats stop. Pure: the chat state holds one
//! and changes it under its lock, in stream order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::time::{Duration, Instant};

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Member, Status};

use crate::state::SessionId;

/// A remote user: the node that holds the session, and the folded nick.
type Who = (String, String);

#[derive(Debug, Default)]
pub struct Roster {
    /// Room key -> its remote members (at least one), in key order: `rooms` pages through it.
    rooms: BTreeMap<String, HashMap<Who, Member>>,
    /// Each remote user's rooms.
    rooms_of: HashMap<Who, HashSet<String>>,
    /// When each node was last heard from (a heartbeat or an event).
    heard: HashMap<String, Instant>,
    /// This node's sessions that joined a room whose join has not come back from the stream
    /// yet: the room's earlier events (stream order) are not theirs to see. Room key -> ids.
    arriving: HashMap<String, HashSet<SessionId>>,
    /// Rooms an operator on another node made private (invite-only or with a key), as the
    /// stream's `mode` events say: `rooms` lists them only to members here too.
    private: HashSet<String>,
    /// Rooms whose privacy changes this node has read from the stream.
    rules_read: HashSet<String>,
    /// While this node reads the events stored before it started: who was in each room at that
    /// point of the stream, as far as the events kept say (see [`Roster::replayed_others`]).
    replay: HashMap<String, HashSet<Who>>,
}

fn who(node: &str, nick: &str) -> Who {
    (node.to_owned(), name_key(nick))
}

impl Roster {
    /// The remote members of a room.
    pub fn members(&self, room_key: &str) -> impl Iterator<Item = &Member> {
        self.rooms
            .get(room_key)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Remote users in at least one room (the only ones this node knows of).
    pub fn users(&self) -> usize {
        self.rooms_of.len()
    }

    /// How many remote members a room has.
    pub fn count(&self, room_key: &str) -> usize {
        self.rooms.get(room_key).map_or(0, HashMap::len)
    }

    /// The keys of the rooms with remote members whose keys sort after `after`, in key order.
    pub fn rooms_after<'a>(&'a self, after: Option<&'a str>) -> impl Iterator<Item = &'a str> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.rooms
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(key, _)| key.as_str())
    }

    /// A `mode` event from another node: whether the room is now private there.
    pub fn set_private(&mut self, room_key: &str, private: bool) {
        if private {
            self.private.insert(room_key.to_owned());
        } else {
            self.private.remove(room_key);
        }
    }

    /// Whether another node made the room private.
    pub fn is_private(&self, room_key: &str) -> bool {
        self.private.contains(room_key)
    }

    /// The remote member of a room called `nick` (folded alike), whichever node holds them.
    pub fn member_called(&self, room_key: &str, nick: &str) -> Option<&Member> {
        let folded = name_key(nick);
        self.rooms
            .get(room_key)?
            .iter()
            .find(|((_, n), _)| *n == folded)
            .map(|(_, m)| m)
    }

    /// The nick, as spelt, of a remote user in any room called `nick` (folded alike). Looks at
    /// every remote user: for an operator's `invite`, not for every line.
    pub fn user_called(&self, nick: &str) -> Option<String> {
        let folded = name_key(nick);
        let (who, rooms) = self.rooms_of.iter().find(|((_, n), _)| *n == folded)?;
        let room = rooms.iter().next()?;
        Some(self.rooms.get(room)?.get(who)?.nick.clone())
    }

    /// A remote member was kicked from a room: forgotten there, whichever node holds them.
    pub fn kicked(&mut self, room_key: &str, nick: &str) {
        let folded = name_key(nick);
        let held: Vec<Who> = self
            .rooms
            .get(room_key)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|(_, n)| *n == folded)
            .cloned()
            .collect();
        for who in held {
            self.leave_who(room_key, &who);
        }
    }

    /// Whether this is the first privacy change of a room this node reads from the stream (it
    /// then starts from the settings the change carries; see `cluster::privacy`).
    pub fn first_rule(&mut self, room_key: &str) -> bool {
        self.rules_read.insert(room_key.to_owned())
    }

    /// An event stored before this node started: a join (`true`) or leave of a room.
    pub fn replayed(&mut self, room_key: &str, node: &str, nick: &str, joined: bool) {
        let who = who(node, nick);
        let members = self.replay.entry(room_key.to_owned()).or_default();
        match joined {
            true => members.insert(who),
            false => members.remove(&who),
        };
    }

    /// A quit stored before this node started.
    pub fn replayed_quit(&mut self, node: &str, nick: &str) {
        let who = who(node, nick);
        for members in self.replay.values_mut() {
            members.remove(&who);
        }
    }

    /// A nick change stored before this node started.
    pub fn replayed_rename(&mut self, node: &str, old: &str, new: &str) {
        let (old, new) = (who(node, old), who(node, new));
        for members in self.replay.values_mut() {
            if members.remove(&old) {
                members.insert(new.clone());
            }
        }
    }

    /// A kick stored before this node started.
    pub fn replayed_kick(&mut self, room_key: &str, nick: &str) {
        let folded = name_key(nick);
        if let Some(members) = self.replay.get_mut(room_key) {
            members.retain(|(_, n)| *n != folded);
        }
    }

    /// Whether someone other than `nick` was in a room at this point of the stream's events
    /// stored before this node started. The stream keeps a room's last `--history` events, so
    /// this may miss members who joined long before (never one who left).
    pub fn replayed_others(&self, room_key: &str, nick: &str) -> bool {
        let folded = name_key(nick);
        self.replay
            .get(room_key)
            .is_some_and(|m| m.iter().any(|(_, n)| *n != folded))
    }

    /// The events stored before this node started are read.
    pub fn replay_done(&mut self) {
        self.replay = HashMap::new();
    }

    /// The rooms a remote user is in.
    pub fn rooms_of(&self, node: &str, nick: &str) -> Vec<String> {
        self.rooms_of
            .get(&who(node, nick))
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The member as known from one of its rooms (for its status), or online.
    fn member(&self, who: &Who, nick: &str) -> Member {
        self.rooms_of
            .get(who)
            .and_then(|rooms| rooms.iter().next())
            .and_then(|room| self.rooms.get(room)?.get(who))
            .cloned()
            .unwrap_or(Member {
                nick: nick.to_owned(),
                status: Status::Online,
                text: None,
                op: false,
            })
    }

    pub fn join(&mut self, room_key: &str, node: &str, nick: &str) {
        let who = who(node, nick);
        let member = self.member(&who, nick);
        self.rooms
            .entry(room_key.to_owned())
            .or_default()
            .insert(who.clone(), member);
        self.rooms_of
            .entry(who)
            .or_default()
            .insert(room_key.to_owned());
    }

    pub fn leave(&mut self, room_key: &str, node: &str, nick: &str) {
        self.leave_who(room_key, &who(node, nick));
    }

    fn leave_who(&mut self, room_key: &str, who: &Who) {
        self.remove_from(room_key, who);
        if let Some(rooms) = self.rooms_of.get_mut(who) {
            rooms.remove(room_key);
            if rooms.is_empty() {
                self.rooms_of.remove(who);
            }
        }
    }

    fn remove_from(&mut self, room_key: &str, who: &Who) {
        if let Some(members) = self.rooms.get_mut(room_key) {
            members.remove(who);
            if members.is_empty() {
                self.rooms.remove(room_key);
            }
        }
    }

    /// A remote user left every room; returns those rooms.
    pub fn quit(&mut self, node: &str, nick: &str) -> Vec<String> {
        let who = who(node, nick);
        let rooms: Vec<String> = self.rooms_of.remove(&who).into_iter().flatten().collect();
        for room in &rooms {
            self.remove_from(room, &who);
        }
        rooms
    }

    /// A remote user's new nick; returns their rooms.
    pub fn rename(&mut self, node: &str, old: &str, new: &str) -> Vec<String> {
        let (old_who, new_who) = (who(node, old), who(node, new));
        let rooms: Vec<String> = self
            .rooms_of
            .remove(&old_who)
            .into_iter()
            .flatten()
            .collect();
        for room in &rooms {
            if let Some(members) = self.rooms.get_mut(room) {
                if let Some(mut member) = members.remove(&old_who) {
                    member.nick = new.to_owned();
                    members.insert(new_who.clone(), member);
                }
            }
        }
        if !rooms.is_empty() {
            self.rooms_of
                .insert(new_who, rooms.iter().cloned().collect());
        }
        rooms
    }

    /// A remote user's status; returns their rooms.
    pub fn presence(&mut self, node: &str, member: &Member) -> Vec<String> {
        let who = who(node, &member.nick);
        let rooms = self.rooms_of(node, &member.nick);
        for room in &rooms {
            if let Some(m) = self.rooms.get_mut(room).and_then(|m| m.get_mut(&who)) {
                m.status = member.status;
                m.text.clone_from(&member.text);
            }
        }
        rooms
    }

    /// Replace what is known of `node` with its own account: `(room key, members)` pairs.
    pub fn replace_node(&mut self, node: &str, rooms: Vec<(String, Vec<Member>)>) {
        self.forget_node(node);
        for (room, members) in rooms {
            for member in members {
                let who = who(node, &member.nick);
                self.rooms_of
                    .entry(who.clone())
                    .or_default()
                    .insert(room.clone());
                self.rooms.entry(room.clone()).or_default().insert(
                    who,
                    Member {
                        op: false,
                        ..member
                    },
                );
            }
        }
    }

    /// Forget every member of `node`; returns each one's nick and rooms.
    pub fn forget_node(&mut self, node: &str) -> Vec<(String, Vec<String>)> {
        let gone: Vec<Who> = self
            .rooms_of
            .keys()
            .filter(|(n, _)| n == node)
            .cloned()
            .collect();
        let mut lost = Vec::new();
        for who in gone {
            let rooms: Vec<String> = self.rooms_of.remove(&who).into_iter().flatten().collect();
            let mut nick = who.1.clone();
            for room in &rooms {
                if let Some(m) = self.rooms.get(room).and_then(|m| m.get(&who)) {
                    nick.clone_from(&m.nick);
                }
                self.remove_from(room, &who);
            }
            lost.push((nick, rooms));
        }
        self.heard.remove(node);
        lost
    }

    /// A session of this node joined `room_key`; its join is on its way to the stream.
    pub fn arriving(&mut self, room_key: &str, session: SessionId) {
        self.arriving
            .entry(room_key.to_owned())
            .or_default()
            .insert(session);
    }

    /// A session's join came back from the stream: from here on the room's events are its own.
    pub fn arrived(&mut self, room_key: &str, session: SessionId) {
        if let Some(ids) = self.arriving.get_mut(room_key) {
            ids.remove(&session);
            if ids.is_empty() {
                self.arriving.remove(room_key);
            }
        }
    }

    /// The sessions of this node still arriving in a room (none, nearly always).
    pub fn still_arriving(&self, room_key: &str) -> Option<&HashSet<SessionId>> {
        self.arriving.get(room_key)
    }

    /// `node` said something at `now`.
    pub fn heard(&mut self, node: &str, now: Instant) {
        match self.heard.get_mut(node) {
            Some(at) => *at = now,
            None => {
                self.heard.insert(node.to_owned(), now);
            }
        }
    }

    /// Count every node as heard `now` (this node was cut off, not they).
    pub fn heard_all(&mut self, now: Instant) {
        for at in self.heard.values_mut() {
            *at = now;
        }
    }

    /// Nodes with members that have not been heard from for `lease` (a node first seen through
    /// its members counts as heard when first seen).
    pub fn silent(&mut self, now: Instant, lease: Duration) -> Vec<String> {
        let nodes: HashSet<&String> = self.rooms_of.keys().map(|(n, _)| n).collect();
        let mut silent = Vec::new();
        for node in nodes {
            let at = *self.heard.entry(node.clone()).or_insert(now);
            if now.duration_since(at) >= lease {
                silent.push(node.clone());
            }
        }
        silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nicks(roster: &Roster, room: &str) -> Vec<String> {
        let mut n: Vec<String> = roster.members(room).map(|m| m.nick.clone()).collect();
        n.sort();
        n
    }

    #[test]
    fn joins_leaves_and_quits() {
        let mut r = Roster::default();
        r.join("lobby", "a", "Ann");
        r.join("lobby", "b", "bob");
        r.join("dev", "a", "Ann");
        assert_eq!(nicks(&r, "lobby"), ["Ann", "bob"]);
        r.leave("lobby", "a", "ANN");
        assert_eq!(nicks(&r, "lobby"), ["bob"]);
        assert_eq!(r.rooms_of("a", "ann"), ["dev"]);
        assert_eq!(r.quit("a", "Ann"), ["dev"]);
        assert_eq!(nicks(&r, "dev"), Vec::<String>::new());
        assert!(r.quit("a", "Ann").is_empty());
    }

    #[test]
    fn the_same_nick_on_two_nodes_is_two_members() {
        let mut r = Roster::default();
        r.join("lobby", "a", "x");
        r.join("lobby", "b", "x");
        r.leave("lobby", "a", "x");
        assert_eq!(nicks(&r, "lobby"), ["x"]);
        assert_eq!(r.rooms_of("b", "x"), ["lobby"]);
    }

    #[test]
    fn rename_and_presence_follow_the_user_into_later_joins() {
        let mut r = Roster::default();
        r.join("lobby", "a", "ann");
        let away = Member {
            nick: "ann".into(),
            status: Status::Away,
            text: Some("lunch".into()),
            op: false,
        };
        assert_eq!(r.presence("a", &away), ["lobby"]);
        assert_eq!(r.rename("a", "ann", "anna"), ["lobby"]);
        r.join("dev", "a", "anna");
        let m: Vec<&Member> = r.members("dev").collect();
        assert_eq!(m[0].nick, "anna");
        assert_eq!(m[0].status, Status::Away);
        assert!(r.rooms_of("a", "ann").is_empty());
    }

    #[test]
    fn a_silent_node_is_found_and_forgotten() {
        let mut r = Roster::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(10);
        r.join("lobby", "a", "ann");
        r.join("lobby", "b", "bob");
        assert!(r.silent(t0, lease).is_empty());
        r.heard("b", t0 + Duration::from_secs(8));
        let mut silent = r.silent(t0 + Duration::from_secs(10), lease);
        silent.sort();
        assert_eq!(silent, ["a"]);
        assert_eq!(
            r.forget_node("a"),
            [("ann".to_owned(), vec!["lobby".to_owned()])]
        );
        assert_eq!(nicks(&r, "lobby"), ["bob"]);
    }

    #[test]
    fn sessions_arrive_one_by_one() {
        let mut r = Roster::default();
        r.arriving("dev", 1);
        r.arriving("dev", 2);
        r.arrived("dev", 1);
        assert_eq!(r.still_arriving("dev").map(|s| s.len()), Some(1));
        r.arrived("dev", 2);
        r.arrived("lobby", 3);
        assert!(r.still_arriving("dev").is_none());
    }

    #[test]
    fn a_node_account_replaces_what_was_known() {
        let mut r = Roster::default();
        r.join("lobby", "a", "old");
        let ann = Member {
            nick: "ann".into(),
            status: Status::Busy,
            text: None,
            op: true,
        };
        r.replace_node("a", vec![("dev".into(), vec![ann])]);
        assert!(nicks(&r, "lobby").is_empty());
        let m: Vec<&Member> = r.members("dev").collect();
        assert_eq!(
            (m[0].nick.as_str(), m[0].status, m[0].op),
            ("ann", Status::Busy, false)
        );
    }

    #[test]
    fn who_was_in_a_room_at_a_point_of_the_stored_events() {
        let mut r = Roster::default();
        r.replayed("dev", "a", "Ann", true);
        assert!(!r.replayed_others("dev", "ann"), "the maker herself");
        assert!(r.replayed_others("dev", "bob"));
        r.replayed_rename("a", "Ann", "Anna");
        r.replayed("dev", "a", "anna", false);
        assert!(!r.replayed_others("dev", "bob"), "left under her new nick");
        r.replayed("dev", "b", "cat", true);
        r.replayed_kick("dev", "CAT");
        assert!(!r.replayed_others("dev", "bob"), "kicked");
        r.replayed("dev", "b", "dan", true);
        r.replayed_quit("b", "dan");
        assert!(!r.replayed_others("dev", "bob"), "quit");
        r.replayed("dev", "b", "eve", true);
        r.replay_done();
        assert!(!r.replayed_others("dev", "bob"), "forgotten once read");
    }
}
