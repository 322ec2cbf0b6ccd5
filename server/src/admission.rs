//! Who may connect, and how often a password may be guessed.
//!
//! Connections are counted overall and per source: the IP address for TCP, the peer's user id on
//! the Unix socket. A connection that has not said `hello` yet is also counted as *waiting*, with a
//! much lower cap per source and overall, so that idle sockets cannot take the slots registered
//! users need. Failed passwords are counted per source: after [`MAX_FAILED_PASSWORDS`] within
//! [`PASSWORD_WINDOW`] the source is refused every `hello` until the window has passed. TLS
//! handshakes, the one thing a connection costs the server's CPU before it says anything, are
//! rate-limited per source ([`Admission::handshake_allowed`]): a host replaying a canned
//! ClientHello would otherwise make the server sign and derive keys as fast as it can send. Every
//! map here is bounded: by the connection caps, or (the password failures, the handshake rates)
//! by [`MAX_TRACKED`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::buckets::BucketTable;

/// Connections that have not said hello yet, from one source at once (or a quarter of
/// `--max-per-ip`, when that is more).
pub const MAX_WAITING_PER_SOURCE: usize = 16;
/// Connections that have not said hello yet, overall (or a tenth of `--max-clients`, when that is
/// more).
pub const MAX_WAITING: usize = 1024;
/// Failed passwords from one source, within [`PASSWORD_WINDOW`], before it is refused for a while.
pub const MAX_FAILED_PASSWORDS: u32 = 5;
/// How long failures are remembered, and how long a source that made too many is refused.
pub const PASSWORD_WINDOW: Duration = Duration::from_secs(60);
/// Sources whose failed passwords (and, apart, handshake rates) are remembered at once.
pub const MAX_TRACKED: usize = 4096;
/// TLS handshakes one source may start at once (or `--max-per-ip`, when that is more)...
pub const HANDSHAKE_BURST: usize = 64;
/// ...and then per second, as a fraction of that burst: 8 a second by default. A whole office
/// reconnecting after a restart is one handshake per host; a loop is not.
pub const HANDSHAKE_REFILL_SECS: f64 = 8.0;

/// Where a connection comes from, for the per-source caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Ip(IpAddr),
    /// A Unix socket peer, by user id.
    Uid(u32),
    /// A Unix socket peer whose credentials could not be read (and in-process tests): counted
    /// overall only.
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Ip(ip) => write!(f, "{ip}"),
            Source::Uid(uid) => write!(f, "uid {uid}"),
            Source::Unknown => f.write_str("unknown"),
        }
    }
}

/// The caps, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub max_clients: usize,
    pub max_per_source: usize,
    pub max_waiting: usize,
    pub max_waiting_per_source: usize,
}

#[derive(Debug, Default)]
struct PerSource {
    open: usize,
    waiting: usize,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    waiting: usize,
    by_source: HashMap<Source, PerSource>,
}

/// A source's recent failed passwords.
#[derive(Debug, Clone, Copy)]
struct Failures {
    first: Instant,
    count: u32,
}

/// The connection counts and the password throttle of one server.
#[derive(Debug)]
pub struct Admission {
    caps: Caps,
    counts: Mutex<Counts>,
    failures: Mutex<HashMap<Source, Failures>>,
    handshakes: Mutex<BucketTable<Source>>,
}

/// Why a connection is not admitted: the message its `server_full` error carries.
pub type NotAdmitted = &'static str;

impl Admission {
    pub fn new(caps: Caps) -> Arc<Self> {
        let burst = HANDSHAKE_BURST.max(caps.max_per_source) as f64;
        Arc::new(Admission {
            caps,
            counts: Mutex::new(Counts::default()),
            failures: Mutex::new(HashMap::new()),
            handshakes: Mutex::new(BucketTable::new(
                MAX_TRACKED,
                burst,
                burst / HANDSHAKE_REFILL_SECS,
            )),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failures(&self) -> MutexGuard<'_, HashMap<Source, Failures>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot for a new connection (waiting for its hello), or say why not.
    pub fn admit(self: &Arc<Self>, source: Source) -> Result<Permit, NotAdmitted> {
        let caps = self.caps;
        let mut c = self.counts();
        if c.open >= caps.max_clients {
            return Err("the server is full; try again later");
        }
        if c.waiting >= caps.max_waiting {
            return Err("too many connections are waiting for hello; try again later");
        }
        if source != Source::Unknown {
            let s = c.by_source.entry(source).or_default();
            if s.open >= caps.max_per_source {
                return Err("too many connections from your address");
            }
            if s.waiting >= caps.max_waiting_per_source {
                return Err("too many connections from your address are waiting for hello");
            }
            s.open += 1;
            s.waiting += 1;
        }
        c.open += 1;
        c.waiting += 1;
        Ok(Permit {
            admission: self.clone(),
            source,
            waiting: true,
        })
    }

    /// Connections open right now (registered or not).
    pub fn open(&self) -> usize {
        self.counts().open
    }

    /// Whether `source` may start a TLS handshake at `now` (taking one from its budget). A source
    /// the full table cannot track is let through, as the budgets do.
    pub fn handshake_allowed(&self, source: Source, now: Instant) -> bool {
        if source == Source::Unknown {
            return true;
        }
        let mut table = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        table.get(&source, now).is_none_or(|b| b.try_take(now))
    }

    /// Whether `source` may try a password at `now`; if not, how long until it may.
    pub fn password_allowed(&self, source: Source, now: Instant) -> Result<(), Duration> {
        let failures = self.failures();
        match failures.get(&source) {
            Some(f) if f.count >= MAX_FAILED_PASSWORDS => {
                let until = f.first + PASSWORD_WINDOW;
                match until.checked_duration_since(now) {
                    Some(left) if !left.is_zero() => Err(left),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Count a failed password from `source` at `now`.
    pub fn password_failed(&self, source: Source, now: Instant) {
        let mut failures = self.failures();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&source) {
            failures.retain(|_, f| now.saturating_duration_since(f.first) < PASSWORD_WINDOW);
            if failures.len() >= MAX_TRACKED {
                // Still full of recent failures: forget the one that started longest ago.
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.first)
                    .map(|(s, _)| *s)
                {
                    failures.remove(&oldest);
                }
            }
        }
        let f = failures.entry(source).or_insert(Failures {
            first: now,
            count: 0,
        });
        if now.saturating_duration_since(f.first) >= PASSWORD_WINDOW {
            *f = Failures {
                first: now,
                count: 0,
            };
        }
        f.count += 1;
    }

    /// Sources whose failed passwords are remembered (for the bound's test).
    #[cfg(test)]
    fn tracked_sources(&self) -> usize {
        self.failures().len()
    }
}

/// One admitted connection; gives its slot back when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    source: Source,
    waiting: bool,
}

impl Permit {
    pub fn source(&self) -> Source {
        self.source
    }

    /// The connection said hello: it no longer counts as waiting.
    pub fn registered(&mut self) {
        if std::mem::take(&mut self.waiting) {
            let mut c = self.admission.counts();
            c.waiting -= 1;
            if let Some(s) = c.by_source.get_mut(&self.source) {
                s.waiting -= 1;
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.admission.counts();
        c.open -= 1;
        if self.waiting {
            c.waiting -= 1;
        }
        if let Some(s) = c.by_source.get_mut(&self.source) {
            s.open -= 1;
            if self.waiting {
                s.waiting -= 1;
            }
            if s.open == 0 {
                c.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_handshakes_are_rate_limited_per_source() {
        let a = Admission::new(caps());
        let t = Instant::now();
        let allowed = (0..100).filter(|_| a.handshake_allowed(ip(1), t)).count();
        assert_eq!(allowed, HANDSHAKE_BURST, "the burst, then nothing at once");
        assert!(
            a.handshake_allowed(ip(2), t),
            "another source is not affected"
        );
        assert!(a.handshake_allowed(Source::Unknown, t));
        // 8 a second: one more after an eighth of a second.
        let later = t + Duration::from_millis(130);
        assert!(a.handshake_allowed(ip(1), later));
        assert!(!a.handshake_allowed(ip(1), later));
    }

    fn caps() -> Caps {
        Caps {
            max_clients: 10,
            max_per_source: 4,
            max_waiting: 6,
            max_waiting_per_source: 2,
        }
    }

    fn ip(last: u8) -> Source {
        Source::Ip(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn waiting_connections_have_their_own_caps() {
        let a = Admission::new(caps());
        let mut first = a.admit(ip(1)).unwrap();
        let _second = a.admit(ip(1)).unwrap();
        assert!(a.admit(ip(1)).is_err(), "two waiting from one address");
        first.registered();
        let _third = a.admit(ip(1)).unwrap();
        // Registered ones count toward the per-source cap.
        let mut all: Vec<Permit> = Vec::new();
        for last in 2..=3 {
            all.push(a.admit(ip(last)).unwrap());
            all.push(a.admit(ip(last)).unwrap());
        }
        assert_eq!(a.counts().waiting, 6);
        assert!(a.admit(ip(9)).is_err(), "six waiting overall");
        for p in &mut all {
            p.registered();
        }
        assert!(a.admit(ip(9)).is_ok());
    }

    #[test]
    fn slots_come_back_and_the_map_empties() {
        let a = Admission::new(caps());
        let permits: Vec<Permit> = (1..=4)
            .map(|_| {
                let mut p = a.admit(ip(1)).unwrap();
                p.registered();
                p
            })
            .collect();
        assert!(a.admit(ip(1)).is_err(), "four per source");
        drop(permits);
        assert_eq!(a.open(), 0);
        assert!(a.counts().by_source.is_empty());
        assert_eq!(a.counts().waiting, 0);
    }

    #[test]
    fn unix_peers_are_capped_by_uid() {
        let a = Admission::new(caps());
        let _p: Vec<Permit> = (0..2)
            .map(|_| a.admit(Source::Uid(1000)).unwrap())
            .collect();
        assert!(a.admit(Source::Uid(1000)).is_err());
        assert!(a.admit(Source::Uid(1001)).is_ok());
    }

    #[test]
    fn passwords_are_refused_for_a_while_after_five_failures() {
        let a = Admission::new(caps());
        let t = Instant::now();
        for i in 0..MAX_FAILED_PASSWORDS {
            assert!(a.password_allowed(ip(1), t).is_ok(), "try {i}");
            a.password_failed(ip(1), t + Duration::from_secs(u64::from(i)));
        }
        let wait = a
            .password_allowed(ip(1), t + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            a.password_allowed(ip(2), t).is_ok(),
            "other sources are not affected"
        );
        assert!(a.password_allowed(ip(1), t + PASSWORD_WINDOW).is_ok());
        // A fresh window after that.
        a.password_failed(ip(1), t + PASSWORD_WINDOW);
        assert!(a.password_allowed(ip(1), t + PASSWORD_WINDOW).is_ok());
    }

    #[test]
    fn failures_spread_over_time_are_forgiven() {
        let a = Admission::new(caps());
        let t = Instant::now();
        for i in 0..20u64 {
            let at = t + Duration::from_secs(61 * i);
            assert!(a.password_allowed(ip(1), at).is_ok());
            a.password_failed(ip(1), at);
        }
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let a = Admission::new(caps());
        let t = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 100) {
            let source = Source::Ip(IpAddr::from(n.to_be_bytes()));
            a.password_failed(source, t);
        }
        assert!(a.tracked_sources() <= MAX_TRACKED);
    }
}
