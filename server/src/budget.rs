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

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lanchat_protocol::bucket::TokenBucket;
use lanchat_protocol::Limits;

use crate::admission::Source;
use crate::buckets::BucketTable;

/// How many nicks' worth of messages one address may send, at least.
pub const PER_SOURCE: u32 = 4;
/// Connections allowed per address for each further nick's worth.
const CONNECTIONS_PER_NICK: usize = 16;
/// Buckets kept at once: nicks, and addresses, each.
pub const MAX_TRACKED: usize = 4096;

/// One kind of budget: the buckets of every nick and address.
#[derive(Debug)]
pub struct Budget {
    /// Tokens a second of a nick; no limit at all when 0.
    per_sec: f64,
    tables: Mutex<Tables>,
}

#[derive(Debug)]
struct Tables {
    nicks: BucketTable<String>,
    sources: BucketTable<Source>,
}

/// The three budgets of one server.
#[derive(Debug)]
pub struct Budgets {
    pub messages: Budget,
    pub events: Budget,
    pub reply_bytes: Budget,
}

impl Tables {
    fn charge(&mut self, source: Option<Source>, nick_key: &str, amount: f64, now: Instant) {
        if let Some(b) = self.nicks.existing(nick_key) {
            b.charge(amount, now);
        }
        if let Some(b) = source.and_then(|s| self.sources.existing(&s)) {
            b.charge(amount, now);
        }
    }
}

impl Budgets {
    /// Budgets for these limits, on a server allowing `max_per_source` connections per address.
    pub fn new(limits: &Limits, max_per_source: usize) -> Self {
        let per_source = (max_per_source / CONNECTIONS_PER_NICK).max(PER_SOURCE as usize) as f64;
        let budget = |burst: f64, per_sec: f64| Budget {
            per_sec,
            tables: Mutex::new(Tables {
                nicks: BucketTable::new(MAX_TRACKED, burst, per_sec),
                sources: BucketTable::new(MAX_TRACKED, burst * per_source, per_sec * per_source),
            }),
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

    /// One request's worth, for the tests.
    #[cfg(test)]
    fn admit(&self, source: Source, nick_key: &str, now: Instant) -> Result<(), Duration> {
        self.charge(source, nick_key, 1.0, now)
    }

    /// Charge `amount` to `nick_key` (a folded nick) and `source`, allowed while both buckets
    /// hold a token (an amount larger than that may leave them in debt; 0 only checks). If
    /// either is out of budget, nothing is charged and the error says how long until both have
    /// a token again. When a table is full of buckets in use, a newcomer is not tracked (and not
    /// limited by it) rather than evicting someone's spent budget: filling it takes thousands of
    /// requests within seconds, each within budget.
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
        // An untracked key (the table full of buckets in use) is not limited by it.
        let nick_ok = t.nicks.get(nick_key, now).is_none_or(|b| b.has_token(now));
        let source = (source != Source::Unknown).then_some(source);
        let source_ok = source
            .and_then(|s| t.sources.get(&s, now))
            .is_none_or(|b| b.has_token(now));
        if !(nick_ok && source_ok) {
            let wait = |b: Option<&mut TokenBucket>| b.map_or(Duration::ZERO, |b| b.wait(now));
            let nick_wait = wait(t.nicks.existing(nick_key));
            let source_wait = wait(source.and_then(|s| t.sources.existing(&s)));
            return Err(nick_wait.max(source_wait));
        }
        t.charge(source, nick_key, amount, now);
        Ok(())
    }

    /// Charge `amount` that is already spent (a reply already sent), whatever is left.
    pub fn force(&self, source: Source, nick_key: &str, amount: f64, now: Instant) {
        if self.per_sec > 0.0 {
            let source = (source != Source::Unknown).then_some(source);
            self.tables().charge(source, nick_key, amount, now);
        }
    }

    /// Buckets held (for tests and the bound).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        let t = self.tables();
        t.nicks.len() + t.sources.len()
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
