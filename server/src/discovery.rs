//! UDP discovery: beacons on the interfaces the TCP listeners serve, and answers to `discover`.
//!
//! One UDP socket bound to the wildcard address (broadcasts reach only wildcard-bound sockets)
//! with SO_REUSEADDR and SO_REUSEPORT, so several servers on one host share the discovery port.
//! Beacons go to each served interface's directed broadcast address: 255.255.255.255 fails with
//! ENETUNREACH on a host without a default route, which is common on an isolated LAN.
//!
//! Answers are limited ([`AnswerLimiter`]): a `discover` is 32 bytes and its beacon about 180
//! (nearly 400 with a 200-byte `--name`), and the query's source address can be forged, so an
//! unlimited server would reflect and amplify a flood toward any host of the LAN. Each source
//! address gets 4 answers at once and then 1 a second, and the server 200 a second in all;
//! queries over those limits are dropped without a word. PROTOCOL.md ("UDP discovery") states the
//! resulting bounds.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanchat_net::{ipv4_interfaces, Interface};
use lanchat_protocol::bucket::TokenBucket;

use crate::buckets::BucketTable;
use lanchat_protocol::discovery::{Beacon, Datagram, ServerState, MAX_DATAGRAM};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::AnnounceConfig;
use crate::Shared;

/// Where beacons go and which TCP port each advertises, given the TCP listeners.
///
/// A listener on a specific address serves only the interface that has it (loopback for
/// 127.x); one on 0.0.0.0 serves every interface. IPv6-only listeners are not announced.
pub fn targets(listeners: &[SocketAddr], interfaces: &[Interface]) -> Vec<(Ipv4Addr, u16)> {
    let mut out: Vec<(Ipv4Addr, u16)> = Vec::new();
    for iface in interfaces {
        let port = listeners.iter().find_map(|l| match l {
            SocketAddr::V4(v4) if v4.ip().is_unspecified() || *v4.ip() == iface.addr => {
                Some(v4.port())
            }
            _ => None,
        });
        if let Some(port) = port {
            if !out.iter().any(|(b, _)| *b == iface.broadcast) {
                out.push((iface.broadcast, port));
            }
        }
    }
    out
}

/// The TCP port to advertise to a querier at `src`, if any listener can be reached from there.
fn port_for(listeners: &[SocketAddr], interfaces: &[Interface], src: Ipv4Addr) -> Option<u16> {
    listeners.iter().find_map(|l| match l {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => Some(v4.port()),
        SocketAddr::V4(v4) => {
            let reachable = (v4.ip().is_loopback() && src.is_loopback())
                || interfaces
                    .iter()
                    .any(|i| i.addr == *v4.ip() && i.contains(src));
            reachable.then_some(v4.port())
        }
        _ => None,
    })
}

/// Answers one source address may get at once. A client sends a query and resends it once if
/// nothing came back (`lanchat discover`: after a third of its one-second timeout), so two runs
/// in a row from one host are answered in full.
pub const PER_SOURCE_BURST: f64 = 4.0;
/// Answers a second one source address may get once its burst is spent.
pub const PER_SOURCE_PER_SEC: f64 = 1.0;
/// Answers the server sends at once and per second to all sources together: dozens of clients
/// on one LAN discovering at the same moment are all answered, and a flood from forged sources
/// costs at most this many beacons, chat-state lookups and sends a second.
pub const OVERALL_PER_SEC: f64 = 200.0;
/// Source addresses whose limit is tracked at most. A source whose bucket has refilled (at
/// most [`SOURCE_IDLE`] after its last query) is forgotten when room is needed: that gives it
/// nothing it would not have had. While every tracked source is active, a new one is not
/// answered. (The table is a [`BucketTable`].)
pub const MAX_SOURCES: usize = 1024;
/// The longest a source's bucket takes to refill completely.
pub const SOURCE_IDLE: Duration = Duration::from_secs(4);
/// How often the count of dropped queries is logged, at most.
const DROPPED_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long the list of interfaces (a getifaddrs call) is reused before it is read again.
const INTERFACES_TTL: Duration = Duration::from_secs(5);

/// What the limiter decided about one `discover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// This source used its burst and its rate.
    SourceLimited,
    /// All sources together used the server's rate.
    OverallLimited,
    /// The source table is full of active sources; this new one is not tracked or answered.
    TooManySources,
}

/// The answer limits: a token bucket per source address (at most [`MAX_SOURCES`] of them) and
/// one for the server. Pure: the caller passes the time.
pub struct AnswerLimiter {
    sources: BucketTable<Ipv4Addr>,
    overall: TokenBucket,
}

impl AnswerLimiter {
    pub fn new(now: Instant) -> Self {
        AnswerLimiter {
            sources: BucketTable::new(MAX_SOURCES, PER_SOURCE_BURST, PER_SOURCE_PER_SEC),
            overall: TokenBucket::new(OVERALL_PER_SEC, OVERALL_PER_SEC, now),
        }
    }

    /// Whether to answer a `discover` from `src` at `now`; an answer takes one token from the
    /// source's bucket and one from the server's.
    pub fn check(&mut self, src: Ipv4Addr, now: Instant) -> Verdict {
        let Some(source) = self.sources.get(&src, now) else {
            return Verdict::TooManySources;
        };
        if !source.try_take(now) {
            Verdict::SourceLimited
        } else if !self.overall.try_take(now) {
            Verdict::OverallLimited
        } else {
            Verdict::Answer
        }
    }

    /// Source addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }
}

/// Datagrams not answered: counted, and logged at most once per [`DROPPED_LOG_EVERY`] so that a
/// flood cannot flood the log too.
#[derive(Default)]
struct Dropped {
    /// Since the last log line, by reason.
    source: u64,
    overall: u64,
    table: u64,
    not_a_query: u64,
    /// Since the start, for the last log line.
    total: u64,
    last_log: Option<Instant>,
}

impl Dropped {
    fn count(&mut self, verdict: Verdict, now: Instant) {
        match verdict {
            Verdict::Answer => return,
            Verdict::SourceLimited => self.source += 1,
            Verdict::OverallLimited => self.overall += 1,
            Verdict::TooManySources => self.table += 1,
        }
        self.total += 1;
        self.maybe_log(now);
    }

    /// A datagram that is neither a discover nor a beacon.
    fn ignore(&mut self, now: Instant) {
        self.not_a_query += 1;
        self.total += 1;
        self.maybe_log(now);
    }

    fn maybe_log(&mut self, now: Instant) {
        if self
            .last_log
            .is_some_and(|t| now.saturating_duration_since(t) < DROPPED_LOG_EVERY)
        {
            return;
        }
        debug!(
            over_source_limit = self.source,
            over_overall_limit = self.overall,
            source_table_full = self.table,
            not_a_query = self.not_a_query,
            "discovery datagrams dropped (counts since the last such line)"
        );
        (self.source, self.overall, self.table, self.not_a_query) = (0, 0, 0, 0);
        self.last_log = Some(now);
    }
}

/// The host's IPv4 interfaces, read again at most every [`INTERFACES_TTL`].
struct InterfaceCache {
    list: Vec<Interface>,
    read_at: Instant,
}

impl InterfaceCache {
    fn new() -> Self {
        InterfaceCache {
            list: ipv4_interfaces(),
            read_at: Instant::now(),
        }
    }

    fn get(&mut self, now: Instant) -> &[Interface] {
        if now.saturating_duration_since(self.read_at) >= INTERFACES_TTL {
            self.list = ipv4_interfaces();
            self.read_at = now;
        }
        &self.list
    }
}

/// The running discovery task (beacons and answers).
pub struct Discovery {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

struct Announcer {
    socket: UdpSocket,
    config: AnnounceConfig,
    listeners: Vec<SocketAddr>,
    shared: Arc<Shared>,
    instance: String,
    limiter: AnswerLimiter,
    dropped: Dropped,
    interfaces: InterfaceCache,
}

impl Discovery {
    /// Start announcing for `listeners` on a socket from [`bind_socket`].
    pub fn start(
        socket: std::net::UdpSocket,
        config: AnnounceConfig,
        listeners: &[SocketAddr],
        shared: Arc<Shared>,
    ) -> Result<Discovery, crate::Error> {
        let socket = UdpSocket::from_std(socket)?;
        let announcer = Announcer {
            socket,
            config,
            listeners: listeners.to_vec(),
            shared,
            instance: uuid::Uuid::new_v4().to_string(),
            limiter: AnswerLimiter::new(Instant::now()),
            dropped: Dropped::default(),
            interfaces: InterfaceCache::new(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(announcer.run(stop.clone()));
        Ok(Discovery { task, stop })
    }

    /// Send the "stopping" beacon and end the task.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

/// Bind the discovery port: the wildcard address (broadcasts reach only wildcard-bound sockets),
/// shared with other servers on this host. The caller binds it before saying it is ready, so a
/// discover sent right after the `listening` line is answered.
pub fn bind_socket(port: u16) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
}

impl Announcer {
    fn beacon(&self, port: u16, state: ServerState) -> Vec<u8> {
        let (users, rooms) = self.shared.chat.lock().beacon_counts();
        Datagram::Beacon(Beacon {
            protocol: lanchat_protocol::PROTOCOL_VERSION,
            server: lanchat_protocol::server_string(),
            name: self.shared.config.name.clone(),
            instance: self.instance.clone(),
            port,
            users,
            rooms,
            auth: self.shared.config.password.is_some(),
            state,
            tls_sha256: self
                .shared
                .config
                .tls
                .as_ref()
                .map(|t| t.fingerprint().to_owned()),
            cluster: self.shared.config.cluster.as_ref().map(|c| c.name.clone()),
        })
        .encode()
    }

    async fn announce(&mut self, state: ServerState) {
        let interfaces = self.interfaces.get(Instant::now());
        for (broadcast, port) in targets(&self.listeners, interfaces) {
            let dest = SocketAddrV4::new(broadcast, self.config.port);
            if let Err(e) = self.socket.send_to(&self.beacon(port, state), dest).await {
                debug!(%dest, error = %e, "beacon not sent");
            }
        }
    }

    async fn run(mut self, stop: CancellationToken) {
        let served = targets(&self.listeners, self.interfaces.get(Instant::now()));
        info!(
            port = self.config.port,
            targets = ?served.iter().map(|(b, _)| b.to_string()).collect::<Vec<_>>(),
            "announcing on the LAN"
        );
        let mut tick = tokio::time::interval(self.config.interval);
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.announce(ServerState::Up).await,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, src)) => self.on_datagram(&buf[..n], src).await,
                    Err(e) => {
                        warn!(error = %e, "discovery socket error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        self.announce(ServerState::Stopping).await;
        debug!(dropped = self.dropped.total, "discovery stopped");
    }

    async fn on_datagram(&mut self, bytes: &[u8], src: SocketAddr) {
        let SocketAddr::V4(src) = src else { return };
        match Datagram::parse(bytes) {
            Some(Datagram::Discover { .. }) => {
                // Limits first: a query over them costs no lookup, no lock and no send.
                let now = Instant::now();
                let verdict = self.limiter.check(*src.ip(), now);
                if verdict != Verdict::Answer {
                    self.dropped.count(verdict, now);
                    return;
                }
                let interfaces = self.interfaces.get(now);
                let Some(port) = port_for(&self.listeners, interfaces, *src.ip()) else {
                    debug!(%src, "discover from where no listener is reachable; not answered");
                    return;
                };
                let beacon = self.beacon(port, ServerState::Up);
                if let Err(e) = self.socket.send_to(&beacon, src).await {
                    debug!(%src, error = %e, "discover answer not sent");
                }
            }
            // Our own and other servers' beacons arrive here too.
            Some(Datagram::Beacon(_)) => {}
            None => self.dropped.ignore(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_source_gets_its_burst_then_one_answer_a_second() {
        let t = Instant::now();
        let mut l = AnswerLimiter::new(t);
        for _ in 0..4 {
            assert_eq!(l.check(ip(1), t), Verdict::Answer);
        }
        assert_eq!(l.check(ip(1), t), Verdict::SourceLimited);
        assert_eq!(l.check(ip(1), t + secs(0.99)), Verdict::SourceLimited);
        assert_eq!(l.check(ip(1), t + secs(1.01)), Verdict::Answer);
        assert_eq!(l.check(ip(1), t + secs(1.02)), Verdict::SourceLimited);
        // Another source is not affected.
        assert_eq!(l.check(ip(2), t + secs(1.02)), Verdict::Answer);
    }

    #[test]
    fn a_flood_from_one_source_is_answered_at_its_rate_only() {
        let t = Instant::now();
        let mut l = AnswerLimiter::new(t);
        // 10,000 queries a second for 10 seconds.
        let answered = (0..100_000)
            .filter(|i| l.check(ip(1), t + secs(*i as f64 / 10_000.0)) == Verdict::Answer)
            .count();
        assert!((13..=14).contains(&answered), "{answered}: 4 + 1 a second");
        assert_eq!(l.check(ip(2), t + secs(10.0)), Verdict::Answer);
    }

    #[test]
    fn all_sources_together_get_the_overall_rate() {
        let t = Instant::now();
        let mut l = AnswerLimiter::new(t);
        // 1,000 sources, each within its own limit, at the same instant.
        let answered = (0..1000u32)
            .filter(|i| l.check(Ipv4Addr::from(0x0a00_0000 + i), t) == Verdict::Answer)
            .count();
        assert_eq!(answered, 200);
        assert_eq!(
            l.check(Ipv4Addr::new(10, 1, 0, 1), t + secs(0.001)),
            Verdict::OverallLimited
        );
        // Later the server has 200 answers again (and the 1,000 sources, idle, make room).
        let later = t + SOURCE_IDLE;
        let answered = (0..300u32)
            .filter(|i| l.check(Ipv4Addr::from(0x0b00_0000 + i), later) == Verdict::Answer)
            .count();
        assert_eq!(answered, 200);
    }

    #[test]
    fn the_source_table_is_bounded_and_forgets_only_rested_sources() {
        let t = Instant::now();
        let mut l = AnswerLimiter::new(t);
        let many = |i: usize| Ipv4Addr::from(0x0a00_0000 + i as u32);
        for i in 0..MAX_SOURCES {
            // Each is tracked, whether the overall limit answers it or not.
            l.check(many(i), t);
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        // Every source took a token half a second ago: none has refilled, a new one is refused.
        let newcomer = Ipv4Addr::new(192, 168, 0, 1);
        assert_eq!(l.check(newcomer, t + secs(0.5)), Verdict::TooManySources);
        assert_eq!(l.tracked(), MAX_SOURCES);
        // A second later they have their burst back and are forgotten when room is needed.
        let later = t + secs(1.0);
        assert_eq!(l.check(newcomer, later), Verdict::Answer);
        assert_eq!(l.tracked(), 1);
        // A flood from ever new addresses never grows the table.
        for i in 0..100_000 {
            l.check(
                Ipv4Addr::from(0x0c00_0000 + i),
                later + secs(f64::from(i) * 1e-5),
            );
            assert!(l.tracked() <= MAX_SOURCES);
        }
    }

    #[test]
    fn a_forgotten_source_does_not_get_more_than_its_limit() {
        let t = Instant::now();
        let mut l = AnswerLimiter::new(t);
        let victim = ip(1);
        let mut answered = 0;
        // The victim's address is queried every 0.5 s for 60 s while ever new sources try to
        // push it out of the table: it is never idle, so never forgotten with tokens owed.
        for step in 0..120u32 {
            let now = t + secs(f64::from(step) * 0.5);
            for j in 0..50 {
                l.check(Ipv4Addr::from(0x0d00_0000 + step * 50 + j), now);
            }
            if l.check(victim, now) == Verdict::Answer {
                answered += 1;
            }
        }
        assert!(answered <= 4 + 60, "{answered}");
    }

    /// The reflection a forged `discover` buys: its answer's size over the query's. With TLS on,
    /// the fingerprint (64 hex digits and its key, 80 bytes) raises the worst case from 13 to 15
    /// times the query. The size is not what bounds a reflection attack: the answer limits are
    /// ([`PER_SOURCE_BURST`], [`PER_SOURCE_PER_SEC`], [`OVERALL_PER_SEC`]), so a victim gets at
    /// most 4 answers and then 1 a second from each server, whatever the attacker sends.
    #[test]
    fn a_beacon_is_at_most_15_times_a_minimal_query() {
        let query = Datagram::Discover { protocol: 1 }.encode();
        assert_eq!(query.len(), 32, "{}", String::from_utf8_lossy(&query));
        let beacon = |name: &str, tls: bool| {
            Datagram::Beacon(Beacon {
                protocol: 1,
                server: lanchat_protocol::server_string(),
                name: name.into(),
                instance: uuid::Uuid::new_v4().to_string(),
                port: 65535,
                users: 10_000,
                rooms: 10_000,
                auth: false,
                state: ServerState::Stopping,
                tls_sha256: tls.then(|| "0".repeat(64)),
                cluster: None,
            })
            .encode()
            .len()
        };
        // A host name as the default name, and the longest ASCII --name (PROTOCOL.md's figures).
        let usual = beacon("office-server", true);
        assert!(usual <= 290, "{usual}");
        let longest_name = "n".repeat(crate::config::MAX_NAME_BYTES);
        let longest = beacon(&longest_name, true);
        assert_eq!(
            longest - beacon(&longest_name, false),
            80,
            "the fingerprint's cost"
        );
        assert!(longest <= 13 * query.len() + 80, "{longest}");
        assert!(longest <= 15 * query.len(), "{longest}");
        eprintln!("beacon {usual} B, {longest} B with the longest name (TLS on); query 32 B");
    }

    fn iface(a: [u8; 4], prefix: u32) -> Interface {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let addr = Ipv4Addr::from(a);
        Interface {
            name: "test0".into(),
            addr,
            netmask: Ipv4Addr::from(mask),
            broadcast: Ipv4Addr::from(u32::from(addr) | !mask),
        }
    }

    #[test]
    fn loopback_listener_announces_on_loopback_only() {
        let ifs = [iface([127, 0, 0, 1], 8), iface([10, 9, 0, 2], 24)];
        let l: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            targets(&[l], &ifs),
            vec![("127.255.255.255".parse().unwrap(), 4000)]
        );
        assert_eq!(
            port_for(&[l], &ifs, "127.0.0.1".parse().unwrap()),
            Some(4000)
        );
        assert_eq!(port_for(&[l], &ifs, "10.9.0.7".parse().unwrap()), None);
    }

    #[test]
    fn wildcard_listener_announces_everywhere() {
        let ifs = [iface([127, 0, 0, 1], 8), iface([10, 9, 0, 2], 24)];
        let l: SocketAddr = "0.0.0.0:7878".parse().unwrap();
        let v6: SocketAddr = "[::]:7878".parse().unwrap();
        assert_eq!(
            targets(&[v6, l], &ifs),
            vec![
                ("127.255.255.255".parse().unwrap(), 7878),
                ("10.9.0.255".parse().unwrap(), 7878)
            ]
        );
        assert_eq!(targets(&[v6], &ifs), vec![]);
        assert_eq!(
            port_for(&[l], &ifs, "10.9.0.7".parse().unwrap()),
            Some(7878)
        );
    }

    #[test]
    fn specific_lan_address_serves_its_subnet() {
        let ifs = [iface([127, 0, 0, 1], 8), iface([10, 9, 0, 2], 24)];
        let l: SocketAddr = "10.9.0.2:7000".parse().unwrap();
        assert_eq!(
            targets(&[l], &ifs),
            vec![("10.9.0.255".parse().unwrap(), 7000)]
        );
        assert_eq!(
            port_for(&[l], &ifs, "10.9.0.7".parse().unwrap()),
            Some(7000)
        );
        assert_eq!(port_for(&[l], &ifs, "10.9.1.7".parse().unwrap()), None);
    }
}
