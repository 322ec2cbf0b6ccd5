//! Message budgets that outlive a connection: every `say` and `dm` is charged to the nick that
//! sends it and to the address it comes from, so reconnecting (or opening more connections)
//! refills nothing.
//!
//! The nick's budget is the one announced in `welcome.limits` (`rate_burst`, `rate_per_sec`). An
//! address may send [`PER_SOURCE`] times that, or one nick's worth per 16 connections it is
//! allowed (`--max-per-ip`) when that is more: several people behind one address (a shared host,
//! a NAT whose operator raised `--max-per-ip`) each keep their own. The tables are bounded by
//! [`MAX_TRACKED`]: a bucket that has refilled completely holds nothing a new one would not, so it
//! is the first to go.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use lanchat_protocol::bucket::TokenBucket;
use lanchat_protocol::Limits;

use crate::admission::Source;

/// How many nicks' worth of messages one address may send, at least.
pub const PER_SOURCE: u32 = 4;
/// Connections allowed per address for each further nick's worth.
const CONNECTIONS_PER_NICK: usize = 16;
/// Buckets kept at once, addresses and nicks together.
pub const MAX_TRACKED: usize = 8192;

/// The buckets of one server.
#[derive(Debug)]
pub struct Budgets {
    /// (burst, per second) of a nick; a source gets `per_source` times both.
    burst: f64,
    per_sec: f64,
    per_source: f64,
    tables: Mutex<Tables>,
}

/// Two maps, so that a nick is looked up by `&str` with no copy made per message.
#[derive(Debug, Default)]
struct Tables {
    nicks: HashMap<String, TokenBucket>,
    sources: HashMap<Source, TokenBucket>,
}

impl Tables {
    fn len(&self) -> usize {
        self.nicks.len() + self.sources.len()
    }

    /// Make room for one more bucket if the tables are full: forget the rested buckets. False if
    /// every bucket is still in use.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.len() >= MAX_TRACKED {
            self.nicks.retain(|_, b| !b.is_full(now));
            self.sources.retain(|_, b| !b.is_full(now));
        }
        self.len() < MAX_TRACKED
    }
}

impl Budgets {
    /// Budgets for these limits, on a server allowing `max_per_source` connections per address.
    pub fn new(limits: &Limits, max_per_source: usize) -> Self {
        let per_source = (max_per_source / CONNECTIONS_PER_NICK).max(PER_SOURCE as usize);
        Budgets {
            burst: f64::from(limits.rate_burst),
            per_sec: f64::from(limits.rate_per_sec),
            per_source: per_source as f64,
            tables: Mutex::new(Tables::default()),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bucket(&self, scale: f64, now: Instant) -> TokenBucket {
        TokenBucket::new(self.burst * scale, self.per_sec * scale, now)
    }

    /// Charge one message to `nick_key` (a folded nick) and `source`; false, with nothing
    /// charged, if either is out of budget. When the tables are full of buckets in use, a
    /// newcomer is not tracked (and not limited by them) rather than evicting someone's spent
    /// budget: filling them takes thousands of messages within seconds, each within budget.
    pub fn admit(&self, source: Source, nick_key: &str, now: Instant) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let t = &mut *self.tables();
        if !t.nicks.contains_key(nick_key) && t.make_room(now) {
            t.nicks.insert(nick_key.to_owned(), self.bucket(1.0, now));
        }
        let tracked_source = source != Source::Unknown;
        if tracked_source && !t.sources.contains_key(&source) && t.make_room(now) {
            let bucket = self.bucket(self.per_source, now);
            t.sources.insert(source, bucket);
        }
        let nick_ok = t.nicks.get_mut(nick_key).is_none_or(|b| b.has_token(now));
        let source_ok = t.sources.get_mut(&source).is_none_or(|b| b.has_token(now));
        if !(nick_ok && source_ok) {
            return false;
        }
        if let Some(b) = t.nicks.get_mut(nick_key) {
            b.try_take(now);
        }
        if let Some(b) = t.sources.get_mut(&source) {
            b.try_take(now);
        }
        true
    }

    /// Buckets held (for tests and the bound).
    pub fn tracked(&self) -> usize {
        self.tables().len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;

    fn budgets() -> Budgets {
        Budgets::new(
            &Limits {
                rate_burst: 2,
                rate_per_sec: 1,
                ..Limits::default()
            },
            64,
        )
    }

    fn ip(last: u8) -> Source {
        Source::Ip(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn a_nick_keeps_its_budget_across_connections() {
        let b = budgets();
        let t = Instant::now();
        assert!(b.admit(ip(1), "ann", t));
        assert!(b.admit(ip(1), "ann", t));
        // A new connection, even from another address, is the same nick.
        assert!(!b.admit(ip(2), "ann", t));
        assert!(b.admit(ip(2), "ann", t + Duration::from_secs(1)));
    }

    #[test]
    fn an_address_may_send_four_nicks_worth_and_no_more() {
        let b = budgets();
        let t = Instant::now();
        let mut sent = 0;
        for n in 0..20 {
            for _ in 0..2 {
                if b.admit(ip(1), &format!("nick{n}"), t) {
                    sent += 1;
                }
            }
        }
        assert_eq!(
            sent,
            2 * PER_SOURCE as usize,
            "new nicks do not refill the address"
        );
        assert!(
            b.admit(ip(2), "other", t),
            "another address is not affected"
        );
    }

    #[test]
    fn raising_the_connections_per_address_raises_its_budget() {
        let b = Budgets::new(
            &Limits {
                rate_burst: 2,
                rate_per_sec: 1,
                ..Limits::default()
            },
            1000,
        );
        let t = Instant::now();
        let sent = (0..200)
            .filter(|n| b.admit(ip(1), &format!("n{n}"), t))
            .count();
        assert_eq!(sent, 124, "62 nicks' worth for 1,000 connections");
    }

    #[test]
    fn a_refusal_charges_nothing() {
        let b = budgets();
        let t = Instant::now();
        // Spend the address's budget with other nicks, then try with a fresh one: refused, and
        // the fresh nick's own budget is untouched for another address.
        for n in 0..8 {
            b.admit(ip(1), &format!("n{}", n / 2), t);
        }
        assert!(!b.admit(ip(1), "fresh", t));
        assert!(b.admit(ip(2), "fresh", t));
        assert!(b.admit(ip(2), "fresh", t));
    }

    #[test]
    fn no_limit_means_no_table() {
        let b = Budgets::new(
            &Limits {
                rate_per_sec: 0,
                ..Limits::default()
            },
            64,
        );
        let t = Instant::now();
        assert!((0..1000).all(|i| b.admit(ip(1), &format!("n{i}"), t)));
        assert_eq!(b.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_rested_buckets_first() {
        let b = budgets();
        let t = Instant::now();
        for n in 0..MAX_TRACKED as u32 {
            b.admit(Source::Unknown, &format!("n{n}"), t);
        }
        assert_eq!(b.tracked(), MAX_TRACKED);
        // A minute later every bucket has refilled: a newcomer makes room.
        let later = t + Duration::from_secs(60);
        assert!(b.admit(Source::Unknown, "newcomer", later));
        assert!(b.tracked() <= MAX_TRACKED);
        assert!(
            b.tracked() < 10,
            "rested buckets were forgotten: {}",
            b.tracked()
        );
    }
}
