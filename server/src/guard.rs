//! The per-session protections: the windows that end a session that keeps making protocol errors
//! or keeps sending past the rate limit. (The rate limit itself is charged to the nick and the
//! address, so that it outlives the connection: see [`crate::budget`].)
//!
//! Pure: every method is given the time, so the rules are tested without a clock and the
//! session's paused-clock tests drive them through tokio's time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lanchat_protocol::{ByeReason, ErrorCode};

/// Protocol violations tolerated within `ERROR_WINDOW` before `bye too_many_errors`.
pub const MAX_ERRORS: usize = 20;
/// `rate_limited` replies tolerated within `ERROR_WINDOW` before `bye flood`.
pub const MAX_RATE_LIMITED: usize = 50;
pub const ERROR_WINDOW: Duration = Duration::from_secs(60);

/// What a session must do after an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Too many errors: say this last error (`too_many_errors`), then bye.
    TooManyErrors,
    /// Too many rate-limited messages: bye `flood`.
    Flood,
}

impl Verdict {
    /// The bye that ends the session, if it must end.
    pub fn bye(self) -> Option<(ByeReason, String)> {
        match self {
            Verdict::Continue => None,
            Verdict::TooManyErrors => Some((
                ByeReason::TooManyErrors,
                format!("{MAX_ERRORS} protocol errors within a minute"),
            )),
            Verdict::Flood => Some((
                ByeReason::Flood,
                format!("{MAX_RATE_LIMITED} rate-limited messages within a minute"),
            )),
        }
    }
}

/// One session's protections.
#[derive(Debug)]
pub struct Guard {
    errors: Window,
    rate_limited: Window,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            errors: Window::new(MAX_ERRORS),
            rate_limited: Window::new(MAX_RATE_LIMITED),
        }
    }
}

impl Guard {
    /// Count an error reply of `code`, and say whether the session may go on.
    pub fn record_error(&mut self, code: ErrorCode, now: Instant) -> Verdict {
        if code == ErrorCode::RateLimited {
            if self.rate_limited.record(now) {
                return Verdict::Flood;
            }
        } else if code.is_protocol_violation() && self.errors.record(now) {
            return Verdict::TooManyErrors;
        }
        Verdict::Continue
    }
}

/// A sliding window of recent event times.
#[derive(Debug)]
struct Window {
    times: VecDeque<Instant>,
    max: usize,
}

impl Window {
    fn new(max: usize) -> Self {
        // Empty until the first error: most sessions never make one.
        Window {
            times: VecDeque::new(),
            max,
        }
    }

    /// Record one; true when `max` happened within `ERROR_WINDOW`.
    fn record(&mut self, now: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > ERROR_WINDOW)
        {
            self.times.pop_front();
        }
        self.times.push_back(now);
        if self.times.len() > self.max {
            self.times.pop_front();
        }
        self.times.len() >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_within_a_minute() {
        let mut w = Window::new(3);
        let t = Instant::now();
        assert!(!w.record(t));
        assert!(!w.record(t));
        assert!(!w.record(t + Duration::from_secs(61)));
        assert!(!w.record(t + Duration::from_secs(62)));
        assert!(w.record(t + Duration::from_secs(63)));
    }

    #[test]
    fn twenty_protocol_errors_in_a_minute_end_the_session() {
        let t = Instant::now();
        let mut g = Guard::default();
        for _ in 1..MAX_ERRORS {
            assert_eq!(g.record_error(ErrorCode::BadFrame, t), Verdict::Continue);
        }
        assert_eq!(
            g.record_error(ErrorCode::BadFrame, t),
            Verdict::TooManyErrors
        );
        assert_eq!(
            Verdict::TooManyErrors.bye().unwrap().0,
            ByeReason::TooManyErrors
        );
    }

    #[test]
    fn refusals_that_are_not_violations_are_not_counted() {
        let t = Instant::now();
        let mut g = Guard::default();
        for _ in 0..1000 {
            assert_eq!(g.record_error(ErrorCode::NickTaken, t), Verdict::Continue);
            assert_eq!(g.record_error(ErrorCode::NotInRoom, t), Verdict::Continue);
        }
    }

    #[test]
    fn errors_spread_over_more_than_a_minute_are_forgiven() {
        let t = Instant::now();
        let mut g = Guard::default();
        for i in 0..200u64 {
            let at = t + Duration::from_secs(4 * i);
            assert_eq!(g.record_error(ErrorCode::BadFrame, at), Verdict::Continue);
        }
    }

    #[test]
    fn fifty_rate_limited_messages_in_a_minute_are_a_flood() {
        let t = Instant::now();
        let mut g = Guard::default();
        for _ in 1..MAX_RATE_LIMITED {
            assert_eq!(g.record_error(ErrorCode::RateLimited, t), Verdict::Continue);
        }
        assert_eq!(g.record_error(ErrorCode::RateLimited, t), Verdict::Flood);
        assert_eq!(Verdict::Flood.bye().unwrap().0, ByeReason::Flood);
    }
}
