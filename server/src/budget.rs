//! Budgets that outlive a connection: every request that costs the server or other people
//! something is charged to the nick that sends it and to the address it comes from, so
//! reconnecting (or opening more connections) refills nothing. Three budgets, all announced in
//! `welcome.limits`: messages (`say`, `dm`: one each), events (`join`, `leave`, `nick`, `status`,
//! `topic` set: one each, whatever they fan out to), and reply bytes (`history`, `rooms`: their
//! size, charged once the reply is built, so a large one may leave the budget in debt).
//!
//! A nick's budget is the one announced (`rate_burst`, `rate_per_sec`, and so on). An
//! address may send [`PER_SOURCE`] times that, or one nick's worth per 16 connections it is
//! allowed (`--max-per-ip`) when that is more: several people behind one address (a shared host,
//! a NAT whose operator raised `--max-per-ip`) each keep their own. The tables are bounded by
//! [`MAX_TRACKED`]: a bucket that has refilled completely holds nothing a new one would not, so it
//! is the first to go.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lanchat_protocol::bucket::TokenBucket;
use lanchat_protocol::Limits;

use crate::admission::Source;

/// How many nicks' worth of messages one address may send, at least.
pub const PER_SOURCE: u32 = 4;
/// Connections allowed per address for each further nick's worth.
const CONNECTIONS_PER_NICK: usize = 16;
/// Buckets kept at once, addresses and nicks together.
pub const MAX_TRACKED: usize = 8192;

/// One kind of budget: the buckets of every nick and address.
#[derive(Debug)]
pub struct Budget {
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

/// The three budgets of one server.
#[derive(Debug)]
pub struct Budgets {
    pub messages: Budget,
    pub events: Budget,
    pub reply_bytes: Budget,
}

impl Budgets {
    /// Budgets for these limits, on a server allowing `max_per_source` connections per address.
    pub fn new(limits: &Limits, max_per_source: usize) -> Self {
        let per_source = (max_per_source / CONNECTIONS_PER_NICK).max(PER_SOURCE as usize) as f64;
        let budget = |burst: f64, per_sec: f64| Budget {
            burst,
            per_sec,
            per_source,
            tables: Mutex::new(Tables::default()),
        };
        Budgets {
            messages: budget(f64::from(limits.rate_burst), f64::from(limits.rate_per_sec)),
            events: budget(
                f64::from(limits.event_burst.unwrap_or(0)),
                f64::from(limits.events_per_sec.unwrap_or(0)),
            ),
            reply_bytes: budget(
                f64::from(limits.reply_bytes_burst.unwrap_or(0)),
                f64::from(limits.reply_bytes_per_sec.unwrap_or(0)),
            ),
        }
    }
}

impl Budget {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bucket(&self, scale: f64, now: Instant) -> TokenBucket {
        TokenBucket::new(self.burst * scale, self.per_sec * scale, now)
    }

    /// Charge one to `nick_key` (a folded nick) and `source`; if either is out of budget, nothing
    /// is charged and the error says how long until both have some again. When the tables are
    /// full of buckets in use, a newcomer is not tracked (and not limited by them) rather than
    /// evicting someone's spent budget: filling them takes thousands of requests within seconds,
    /// each within budget.
    pub fn admit(&self, source: Source, nick_key: &str, now: Instant) -> Result<(), Duration> {
        self.charge(source, nick_key, 1.0, now)
    }

    /// [`Budget::admit`] for `amount` at once: allowed while both buckets hold something, which
    /// may then go into debt.
    pub fn charge(
        &self,
        source: Source,
        nick_key: &str,
        amount: f64,
        now: Instant,
    ) -> Result<(), Duration> {
        if self.per_sec <= 0.0 {
            return Ok(());
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
            let wait = |b: Option<&mut TokenBucket>| b.map_or(Duration::ZERO, |b| b.wait(now));
            let nick_wait = wait(t.nicks.get_mut(nick_key));
            return Err(nick_wait.max(wait(t.sources.get_mut(&source))));
        }
        if let Some(b) = t.nicks.get_mut(nick_key) {
            b.charge(amount, now);
        }
        if let Some(b) = t.sources.get_mut(&source) {
            b.charge(amount, now);
        }
        Ok(())
    }

    /// Charge `amount` that is already spent (a reply already sent), whatever is left.
    pub fn force(&self, source: Source, nick_key: &str, amount: f64, now: Instant) {
        if self.per_sec <= 0.0 {
            return;
        }
        let t = &mut *self.tables();
        if let Some(b) = t.nicks.get_mut(nick_key) {
            b.charge(amount, now);
        }
        if let Some(b) = t.sources.get_mut(&source) {
            b.charge(amount, now);
        }
    }

    /// Buckets held (for tests and the bound).
    pub fn tracked(&self) -> usize {
        self.tables().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn budgets() -> Budget {
        Budgets::new(
            &Limits {
                rate_burst: 2,
                rate_per_sec: 1,
                ..Limits::default()
            },
            64,
        )
        .messages
    }

    fn ip(last: u8) -> Source {
        Source::Ip(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn a_nick_keeps_its_budget_across_connections() {
        let b = budgets();
        let t = Instant::now();
        assert!(b.admit(ip(1), "ann", t).is_ok());
        assert!(b.admit(ip(1), "ann", t).is_ok());
        // A new connection, even from another address, is the same nick.
        assert!(b.admit(ip(2), "ann", t).is_err());
        assert!(b.admit(ip(2), "ann", t + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn an_address_may_send_four_nicks_worth_and_no_more() {
        let b = budgets();
        let t = Instant::now();
        let mut sent = 0;
        for n in 0..20 {
            for _ in 0..2 {
                if b.admit(ip(1), &format!("nick{n}"), t).is_ok() {
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
            b.admit(ip(2), "other", t).is_ok(),
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
        )
        .messages;
        let t = Instant::now();
        let sent = (0..200)
            .filter(|n| b.admit(ip(1), &format!("n{n}"), t).is_ok())
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
            let _ = b.admit(ip(1), &format!("n{}", n / 2), t);
        }
        assert!(b.admit(ip(1), "fresh", t).is_err());
        assert!(b.admit(ip(2), "fresh", t).is_ok());
        assert!(b.admit(ip(2), "fresh", t).is_ok());
    }

    #[test]
    fn a_refusal_says_how_long_to_wait() {
        let b = budgets();
        let t = Instant::now();
        assert!(b.admit(ip(1), "ann", t).is_ok());
        assert!(b.admit(ip(1), "ann", t).is_ok());
        assert_eq!(b.admit(ip(1), "ann", t), Err(Duration::from_secs(1)));
    }

    #[test]
    fn large_replies_are_charged_by_size_and_may_leave_a_debt() {
        let bytes = Budgets::new(&Limits::default(), 64).reply_bytes;
        let t = Instant::now();
        let burst = f64::from(Limits::default().reply_bytes_burst.unwrap());
        assert!(
            bytes.charge(ip(1), "ann", burst * 1.5, t).is_ok(),
            "a budget left goes in debt"
        );
        let wait = bytes.charge(ip(1), "ann", 1.0, t).unwrap_err();
        assert!(
            wait > Duration::from_secs(3) && wait < Duration::from_secs(5),
            "{wait:?}"
        );
        assert!(bytes.charge(ip(1), "ann", 1.0, t + wait).is_ok());
    }

    #[test]
    fn no_limit_means_no_table() {
        let b = Budgets::new(
            &Limits {
                rate_per_sec: 0,
                ..Limits::default()
            },
            64,
        )
        .messages;
        let t = Instant::now();
        assert!((0..1000).all(|i| b.admit(ip(1), &format!("n{i}"), t).is_ok()));
        assert_eq!(b.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_rested_buckets_first() {
        let b = budgets();
        let t = Instant::now();
        for n in 0..MAX_TRACKED as u32 {
            assert!(b.admit(Source::Unknown, &format!("n{n}"), t).is_ok());
        }
        assert_eq!(b.tracked(), MAX_TRACKED);
        // A minute later every bucket has refilled: a newcomer makes room.
        let later = t + Duration::from_secs(60);
        assert!(b.admit(Source::Unknown, "newcomer", later).is_ok());
        assert!(b.tracked() <= MAX_TRACKED);
        assert!(
            b.tracked() < 10,
            "rested buckets were forgotten: {}",
            b.tracked()
        );
    }
}
