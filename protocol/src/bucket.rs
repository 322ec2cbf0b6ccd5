//! A token bucket: `burst` tokens, refilled at `per_sec` a second. The server takes one per
//! message to enforce the announced rate limit; the client takes one per message to pace itself
//! under it. The caller passes the time, so the bucket is pure and its tests need no clock.

use std::time::{Duration, Instant};

/// Tokens that refill over time, up to a burst. A rate of zero means no limit.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens at `now`, refilled at `per_sec` tokens a second.
    pub fn new(burst: f64, per_sec: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            burst,
            per_sec,
            last: now,
        }
    }

    /// Whether there is no limit at all (every take succeeds at once).
    pub fn is_unlimited(&self) -> bool {
        self.per_sec <= 0.0
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
    }

    /// Whether a token is there at `now` (nothing is taken).
    pub fn has_token(&mut self, now: Instant) -> bool {
        if self.is_unlimited() {
            return true;
        }
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Whether the bucket is full at `now`: it then holds nothing a new bucket would not.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    /// Take `amount` tokens whatever is there: the bucket may go below zero, and then has no token
    /// until time has paid the debt back. (A reply of many bytes is charged once it is known.)
    pub fn charge(&mut self, amount: f64, now: Instant) {
        if self.is_unlimited() {
            return;
        }
        self.refill(now);
        self.tokens -= amount;
    }

    /// How long from `now` until the bucket has a token again (zero if it has one).
    pub fn wait(&mut self, now: Instant) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }

    /// Take a token if one is there; false (and nothing taken) if not.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.is_unlimited() {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take a token now, borrowing it from the future if need be, and say how long to wait
    /// before acting on it: zero while the burst lasts, then one refill interval per token owed.
    pub fn take_delay(&mut self, now: Instant) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t = Instant::now();
        let mut b = TokenBucket::new(2.0, 1.0, t);
        assert!(b.try_take(t));
        assert!(b.try_take(t));
        assert!(!b.try_take(t), "the burst is spent");
        assert!(!b.try_take(t + Duration::from_millis(999)));
        assert!(b.try_take(t + Duration::from_millis(1001)));
    }

    #[test]
    fn looking_takes_nothing_and_a_rested_bucket_is_full() {
        let t = Instant::now();
        let mut b = TokenBucket::new(2.0, 1.0, t);
        assert!(b.is_full(t));
        assert!(b.has_token(t) && b.has_token(t));
        assert!(b.try_take(t));
        assert!(!b.is_full(t));
        assert!(b.is_full(t + Duration::from_secs(1)));
    }

    #[test]
    fn a_charge_may_go_into_debt_that_time_pays_back() {
        let t = Instant::now();
        let mut b = TokenBucket::new(100.0, 50.0, t);
        b.charge(250.0, t);
        assert!(!b.has_token(t));
        assert_eq!(b.wait(t), Duration::from_millis(3020));
        assert!(!b.has_token(t + Duration::from_secs(3)));
        assert!(b.has_token(t + Duration::from_millis(3020)));
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let t = Instant::now();
        let mut b = TokenBucket::new(3.0, 10.0, t);
        let later = t + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t = Instant::now();
        let mut b = TokenBucket::new(0.0, 0.0, t);
        assert!(b.is_unlimited());
        assert!((0..1000).all(|_| b.try_take(t)));
        assert_eq!(b.take_delay(t), Duration::ZERO);
    }

    #[test]
    fn delays_grow_by_one_interval_per_token_owed() {
        let t = Instant::now();
        let mut b = TokenBucket::new(2.0, 4.0, t);
        assert_eq!(b.take_delay(t), Duration::ZERO);
        assert_eq!(b.take_delay(t), Duration::ZERO);
        assert_eq!(b.take_delay(t), Duration::from_millis(250));
        assert_eq!(b.take_delay(t), Duration::from_millis(500));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let t = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1.0, t);
        assert!(b.try_take(t));
        assert!(!b.try_take(t - Duration::from_secs(5)));
        assert!(
            !b.try_take(t),
            "the earlier call did not move the clock back"
        );
    }
}
