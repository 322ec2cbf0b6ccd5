//! A bounded table of token buckets, one per key (an address, a nick): what the budgets and the
//! discovery port's answer limit keep per client.
//!
//! Bounded by `max` keys. A bucket that has refilled completely holds nothing a new one would
//! not, so when the table is full those are forgotten to make room; that sweep visits every
//! bucket, so it runs at most once per [`SWEEP_EVERY`], and a stream of newcomers cannot turn
//! each request into a scan. A newcomer that still finds no room is not tracked, and the caller
//! says what that means (the budgets let it through, discovery does not answer).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use lanchat_protocol::bucket::TokenBucket;

/// How often a full table is swept for rested buckets, at most.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct BucketTable<K> {
    buckets: HashMap<K, TokenBucket>,
    max: usize,
    burst: f64,
    per_sec: f64,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq> BucketTable<K> {
    /// At most `max` buckets of `burst` tokens refilled at `per_sec`.
    pub fn new(max: usize, burst: f64, per_sec: f64) -> Self {
        BucketTable {
            buckets: HashMap::new(),
            max,
            burst,
            per_sec,
            last_sweep: None,
        }
    }

    /// The bucket of `key`, made full if it is new; `None` if it is new and there is no room.
    pub fn get<Q>(&mut self, key: &Q, now: Instant) -> Option<&mut TokenBucket>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= self.max {
                self.sweep(now);
            }
            if self.buckets.len() >= self.max {
                return None;
            }
            let bucket = TokenBucket::new(self.burst, self.per_sec, now);
            self.buckets.insert(key.to_owned(), bucket);
        }
        self.buckets.get_mut(key)
    }

    /// A bucket already tracked, if it is.
    pub fn existing<Q>(&mut self, key: &Q) -> Option<&mut TokenBucket>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.buckets.get_mut(key)
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets.retain(|_, b| !b.is_full(now));
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_forgetting_only_rested_buckets_and_sweeping_at_most_so_often() {
        let t = Instant::now();
        let mut table: BucketTable<u32> = BucketTable::new(3, 2.0, 1.0);
        for k in 0..3 {
            assert!(table.get(&k, t).unwrap().try_take(t));
        }
        assert!(table.get(&9, t).is_none(), "full of buckets in use");
        // Within the sweep interval nothing is swept, even though the buckets have refilled.
        assert!(table.get(&9, t + Duration::from_millis(50)).is_none());
        let later = t + Duration::from_secs(2);
        assert!(table.get(&9, later).is_some(), "rested buckets made room");
        assert_eq!(table.len(), 1);
        // A flood of new keys never grows the table.
        for k in 10..10_000 {
            let _ = table.get(&k, later);
            assert!(table.len() <= 3);
        }
    }

    #[test]
    fn string_keys_are_looked_up_without_a_copy() {
        let t = Instant::now();
        let mut table: BucketTable<String> = BucketTable::new(10, 1.0, 1.0);
        assert!(table.get("ann", t).unwrap().try_take(t));
        assert!(!table.existing("ann").unwrap().try_take(t));
        assert!(table.existing("bob").is_none());
    }
}
