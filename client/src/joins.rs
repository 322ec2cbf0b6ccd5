//! Joins in bursts. When a server restarts, everyone reconnects within seconds and each rejoin
//! would be a line of its own; so in each room the first few joins of a burst are shown as usual
//! and the rest are held and summed up in one line once the burst is over (no join in that room
//! for [`QUIET`]): `9 more people joined #lobby: cat, dan, eve, ... and 2 others`. People who
//! left the room or quit less than [`REJOIN`] before are summed up apart, as having rejoined
//! (`7 more people rejoined #lobby: ...`). A single join is shown at once, as before. Pure: the time
//! comes in.

use std::collections::HashMap;
use std::time::Duration;

use lanchat_protocol::frame::ServerFrame;
use lanchat_protocol::validate::name_key;
use tokio::time::Instant;

use crate::model::{Model, Show};

/// Joins shown one by one at the start of a burst.
pub const SHOWN_PER_BURST: usize = 3;
/// A burst ends after this long without a join in its room.
pub const QUIET: Duration = Duration::from_secs(2);
/// A join this soon after the same nick left the room (or quit) is a rejoin.
pub const REJOIN: Duration = Duration::from_secs(60);
/// Nicks named in a summary; the rest are counted.
const NAMED: usize = 10;
/// Departures remembered at most (a bound against a flood of quits).
const DEPARTURES: usize = 4096;

#[derive(Debug)]
struct Burst {
    room: String,
    last: Instant,
    shown: usize,
    /// The joins held, each with whether it is a rejoin.
    held: Vec<(String, bool)>,
}

/// Where a nick went when it left.
#[derive(Debug)]
enum Gone {
    /// Left this room (its key).
    Room(String),
    /// Quit the server: gone from every room.
    Quit,
}

/// The bursts of joins under way, by room key, and who left lately.
#[derive(Debug, Default)]
pub struct Joins {
    bursts: HashMap<String, Burst>,
    /// Recent departures: nick key, where from, when.
    departures: Vec<(String, Gone, Instant)>,
}

impl Joins {
    /// Note a departure (a `leave` or `quit` event) that may be followed by a rejoin.
    pub fn note(&mut self, frame: &ServerFrame, now: Instant) {
        match frame {
            ServerFrame::Leave(l) => self.depart(&l.nick, Gone::Room(name_key(&l.room)), now),
            ServerFrame::Quit(q) => self.depart(&q.nick, Gone::Quit, now),
            _ => {}
        }
    }

    /// The connection was lost: everyone in the rooms of `model` counts as gone from them, so
    /// those who come back after the reconnect are summed up as rejoining.
    pub fn lost(&mut self, model: &Model, now: Instant) {
        for room in model.rooms() {
            for member in model.members(room).unwrap_or_default() {
                self.depart(&member.nick, Gone::Room(name_key(room)), now);
            }
        }
    }

    fn depart(&mut self, nick: &str, gone: Gone, now: Instant) {
        self.departures
            .retain(|(_, _, at)| now.duration_since(*at) <= REJOIN);
        if self.departures.len() >= DEPARTURES {
            self.departures.remove(0);
        }
        self.departures.push((name_key(nick), gone, now));
    }

    /// Whether `nick` joining `room` at `now` comes back from a recent departure.
    fn rejoins(&self, room_key: &str, nick: &str, now: Instant) -> bool {
        let nick = name_key(nick);
        self.departures.iter().any(|(who, gone, at)| {
            *who == nick
                && now.duration_since(*at) <= REJOIN
                && match gone {
                    Gone::Room(room) => room == room_key,
                    Gone::Quit => true,
                }
        })
    }

    /// `nick` joined `room` at `now`: true to show it now, false when it is held for the
    /// summary.
    pub fn join(&mut self, room: &str, nick: &str, now: Instant) -> bool {
        let key = name_key(room);
        let rejoin = self.rejoins(&key, nick, now);
        let burst = self.bursts.entry(key).or_insert_with(|| Burst {
            room: room.to_owned(),
            last: now,
            shown: 0,
            held: Vec::new(),
        });
        if now.duration_since(burst.last) > QUIET && burst.held.is_empty() {
            burst.shown = 0;
        }
        burst.last = now;
        if burst.shown < SHOWN_PER_BURST && burst.held.is_empty() {
            burst.shown += 1;
            return true;
        }
        burst.held.push((nick.to_owned(), rejoin));
        false
    }

    /// When the next summary is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.bursts
            .values()
            .filter(|b| !b.held.is_empty())
            .map(|b| b.last + QUIET)
            .min()
    }

    /// The summaries of the bursts over at `now` (of all of them when `all`, before a quit or a
    /// reconnect); bursts long over are forgotten.
    pub fn flush(&mut self, now: Instant, all: bool) -> Vec<Show> {
        let mut show = Vec::new();
        self.bursts.retain(|_, b| {
            let over = now.duration_since(b.last) >= QUIET;
            if (over || all) && !b.held.is_empty() {
                let (rejoined, joined): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut b.held).into_iter().partition(|h| h.1);
                for (held, verb) in [(joined, "joined"), (rejoined, "rejoined")] {
                    if !held.is_empty() {
                        let nicks: Vec<String> = held.into_iter().map(|h| h.0).collect();
                        show.push(Show::Info(summary(&b.room, &nicks, verb)));
                    }
                }
            }
            !over && !all
        });
        show
    }
}

fn summary(room: &str, held: &[String], verb: &str) -> String {
    let mut names: Vec<String> = held
        .iter()
        .take(NAMED)
        .map(|n| crate::sanitize::name(n))
        .collect();
    if held.len() > NAMED {
        names.push(format!("and {} others", held.len() - NAMED));
    }
    let who = if held.len() == 1 {
        "1 more person".to_owned()
    } else {
        format!("{} more people", held.len())
    };
    format!("{who} {verb} #{room}: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mass_rejoin_is_summed_up_once_the_burst_is_over() {
        let mut joins = Joins::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let nicks: Vec<String> = (0..15).map(|i| format!("user{i}")).collect();
        let shown: Vec<bool> = nicks
            .iter()
            .enumerate()
            .map(|(i, n)| joins.join("lobby", n, ms(i as u64 * 500)))
            .collect();
        assert_eq!(shown.iter().filter(|s| **s).count(), SHOWN_PER_BURST);
        assert!(shown[..SHOWN_PER_BURST].iter().all(|s| *s));
        let last = ms(14 * 500);
        assert_eq!(joins.due(), Some(last + QUIET));
        assert!(joins.flush(last + QUIET / 2, false).is_empty());
        assert_eq!(
            joins.flush(last + QUIET, false),
            vec![Show::Info(
                "12 more people joined #lobby: user3, user4, user5, user6, user7, user8, user9, \
                 user10, user11, user12, and 2 others"
                    .into()
            )]
        );
        assert_eq!(joins.due(), None);
        // Later, a single join shows again at once.
        assert!(joins.join("Lobby", "late", last + QUIET * 3));
    }

    #[test]
    fn rooms_are_apart_and_single_joins_are_shown() {
        let mut joins = Joins::default();
        let t0 = Instant::now();
        for (i, room) in ["a", "b", "c", "a", "b", "c"].iter().enumerate() {
            assert!(joins.join(room, "x", t0 + Duration::from_millis(i as u64)));
        }
        assert_eq!(joins.due(), None);
        for nick in ["p", "q"] {
            joins.join("a", nick, t0 + Duration::from_millis(10));
        }
        assert!(!joins.join("a", "r", t0 + Duration::from_millis(11)));
        let all = joins.flush(t0 + Duration::from_millis(12), true);
        assert_eq!(
            all,
            vec![Show::Info("2 more people joined #a: q, r".into())]
        );
    }

    #[test]
    fn those_back_from_a_leave_or_quit_are_summed_up_as_rejoining() {
        use lanchat_protocol::frame::{LeaveEvent, QuitEvent};
        let mut joins = Joins::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        joins.note(
            &ServerFrame::Quit(QuitEvent {
                nick: "Cat".into(),
                reason: "timeout".into(),
            }),
            t0,
        );
        joins.note(
            &ServerFrame::Leave(LeaveEvent {
                room: "lobby".into(),
                nick: "dan".into(),
                kicked_by: None,
                reason: None,
            }),
            t0,
        );
        // Left another room: a join here is new.
        joins.note(
            &ServerFrame::Leave(LeaveEvent {
                room: "dev".into(),
                nick: "eve".into(),
                kicked_by: None,
                reason: None,
            }),
            t0,
        );
        for (i, nick) in ["a", "b", "c", "cat", "dan", "eve"].iter().enumerate() {
            joins.join("lobby", nick, ms(1000 + i as u64));
        }
        assert_eq!(
            joins.flush(ms(1005) + QUIET, false),
            vec![
                Show::Info("1 more person joined #lobby: eve".into()),
                Show::Info("2 more people rejoined #lobby: cat, dan".into()),
            ]
        );
        // Long after the quit, the same nick joining is new again.
        for nick in ["a", "b", "c", "cat"] {
            joins.join("lobby", nick, t0 + REJOIN * 2);
        }
        assert_eq!(
            joins.flush(t0 + REJOIN * 2 + QUIET, false),
            vec![Show::Info("1 more person joined #lobby: cat".into())]
        );
    }
}
