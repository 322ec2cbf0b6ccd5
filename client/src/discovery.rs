//! LAN discovery (the client side of UDP discovery): send `discover` to the directed broadcast
//! address of every up IPv4 interface and to named hosts, listen for passive beacons too, and
//! return the servers heard from within a timeout, one per server instance.
//!
//! A beacon proves nothing about who sent it, so entries are kept apart by **(instance, source
//! address)**: a beacon can update or remove (`stopping`) only the entry of its own source. Two
//! entries from different sources that claim one instance or one name are both listed and marked
//! as a **conflict**, which the client never connects to by itself. The one exception is a server
//! heard on several of its addresses (a server on this host answers on loopback and on the LAN):
//! entries with the same instance *and* the same certificate fingerprint are one server, since
//! whichever address is dialled, the handshake succeeds only with the holder of that certificate.
//!
//! Why separate sockets: answers to a query come unicast to the query's source port, so the query
//! goes out from an ephemeral port of its own. Passive beacons are broadcast to the discovery port,
//! which servers on this host also hold (SO_REUSEPORT, bound to 0.0.0.0). A listener bound to
//! 0.0.0.0 would join their reuse group and could be handed a unicast query meant for a server;
//! one bound to the broadcast address gets the broadcasts and nothing else.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use lanchat_protocol::discovery::{Beacon, Datagram, ServerState, MAX_DATAGRAM};
use lanchat_protocol::pin::Fingerprint;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::sanitize;
use crate::trust::{self, Check, KnownServers};

/// Default time to wait for answers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// What to probe.
#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Duration,
    /// The UDP discovery port (7879).
    pub port: u16,
    /// Hosts probed by unicast (names or addresses, optionally `host:port`).
    pub hosts: Vec<String>,
    /// Only these interfaces (by name); `None` means every up IPv4 interface.
    pub interfaces: Option<Vec<String>>,
    /// Send broadcast queries at all (off when only `hosts` should be asked).
    pub broadcast: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: DEFAULT_TIMEOUT,
            port: lanchat_protocol::DEFAULT_ANNOUNCE_PORT,
            hosts: Vec::new(),
            interfaces: None,
            broadcast: true,
        }
    }
}

/// One server that answered or announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    pub name: String,
    /// Where to connect: the datagram's source IP and the beacon's TCP port.
    pub address: SocketAddr,
    pub users: usize,
    pub rooms: usize,
    pub auth: bool,
    pub state: ServerState,
    pub instance: String,
    pub server: String,
    pub protocol: u64,
    /// The certificate fingerprint the beacon announces (`None`: the server speaks plain only).
    pub tls_sha256: Option<String>,
    /// The cluster the server is a node of (its beacon's `cluster`), made safe for the terminal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Another source claims this one's instance or name: never connected to without the user.
    pub conflict: bool,
    /// What the known-servers file says of it (see [`mark_pins`]).
    pub pin: PinState,
}

/// A discovered server against the known-servers file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinState {
    /// No pin for its name yet (or the file was not consulted).
    #[default]
    New,
    /// Its name is pinned to the fingerprint it announces.
    Pinned,
    /// Its name is pinned to another fingerprint: a changed certificate, or an impostor.
    Changed,
    /// It announces no TLS, though its name is pinned: an impostor, or a server that lost TLS.
    Downgraded,
}

/// A broadcast target: an interface and its directed broadcast address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub interface: String,
    pub broadcast: Ipv4Addr,
}

/// What discovery found and what it tried (for the "nothing found" explanation).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sorted by name, then address.
    pub servers: Vec<Found>,
    pub targets: Vec<Target>,
    /// Named hosts and the address each resolved to (`None`: it did not resolve).
    pub hosts: Vec<(String, Option<SocketAddr>)>,
    pub port: u16,
    /// Whether the passive listener on the discovery port could be opened.
    pub listened: bool,
    /// Sends that failed, as `address: error`.
    pub failures: Vec<String>,
    pub timeout: Duration,
}

/// Every up IPv4 interface with a broadcast address; loopback (which has none) gets the top of
/// its network (127.255.255.255), which is where a server bound to 127.0.0.1 announces.
pub fn broadcast_targets(only: Option<&[String]>) -> io::Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    for iface in lanchat_net::ipv4_interfaces() {
        if only.is_some_and(|only| !only.contains(&iface.name)) {
            continue;
        }
        let target = Target {
            interface: iface.name,
            broadcast: iface.broadcast,
        };
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// An `--interface` that names no IPv4 interface is an `InvalidInput` error naming it (and the
/// ones there are), rather than an empty list of targets that was later blamed on the port.
/// (With `--host`, the hosts alone are asked, so `--interface none` means "unicast only".)
pub fn check_interfaces(only: Option<&[String]>) -> io::Result<()> {
    let interfaces = lanchat_net::ipv4_interfaces();
    let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    match unknown_interfaces(only.unwrap_or_default(), &names) {
        Some(why) => Err(io::Error::new(io::ErrorKind::InvalidInput, why)),
        None => Ok(()),
    }
}

/// Why `asked` cannot be used when the IPv4 interfaces are `there`, if it cannot.
fn unknown_interfaces(asked: &[String], there: &[&str]) -> Option<String> {
    let unknown: Vec<&str> = asked
        .iter()
        .filter(|a| !there.contains(&a.as_str()))
        .map(|a| a.as_str())
        .collect();
    if unknown.is_empty() {
        return None;
    }
    let mut there: Vec<&str> = there.to_vec();
    there.dedup();
    Some(format!(
        "no IPv4 interface named {} (the IPv4 interfaces here: {})",
        unknown.join(", "),
        if there.is_empty() {
            "none".to_owned()
        } else {
            there.join(", ")
        }
    ))
}

/// The list of hosts in LANCHAT_HOSTS (commas or whitespace between them).
pub fn hosts_from_env(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Probe and listen for `opts.timeout`, then report.
pub async fn discover(opts: &Options) -> io::Result<Report> {
    let mut report = Report {
        port: opts.port,
        timeout: opts.timeout,
        ..Report::default()
    };
    let query_socket = udp_socket(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), false)?;
    query_socket.set_broadcast(true)?;

    let mut destinations: Vec<SocketAddr> = Vec::new();
    if opts.broadcast {
        if opts.hosts.is_empty() {
            check_interfaces(opts.interfaces.as_deref())?;
        }
        report.targets = broadcast_targets(opts.interfaces.as_deref())?;
        destinations.extend(
            report
                .targets
                .iter()
                .map(|t| SocketAddr::from((t.broadcast, opts.port))),
        );
    }
    for host in &opts.hosts {
        let resolved = resolve_v4(host, opts.port).await;
        report.hosts.push((host.clone(), resolved));
        destinations.extend(resolved);
    }

    // Passive listeners are bound to each broadcast address rather than to 0.0.0.0: they get
    // the broadcasts but are not in the SO_REUSEPORT group of the servers on this host, so a
    // unicast query to this host's discovery port can never be handed to us instead of a server.
    let (heard_tx, mut heard) = mpsc::channel::<(Vec<u8>, SocketAddr)>(256);
    let mut listeners = Vec::new();
    for target in &report.targets {
        let Ok(socket) = udp_socket(SocketAddrV4::new(target.broadcast, opts.port), true) else {
            continue;
        };
        let tx = heard_tx.clone();
        listeners.push(tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM + 1];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if tx.send((buf[..n].to_vec(), from)).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(heard_tx);
    report.listened = !listeners.is_empty();

    let query = Datagram::Discover {
        protocol: lanchat_protocol::PROTOCOL_VERSION,
    }
    .encode();
    let deadline = Instant::now() + opts.timeout;
    // A second query a third of the way in covers one lost datagram.
    let mut resend_at = Some(Instant::now() + opts.timeout / 3);
    send_all(&query_socket, &query, &destinations, &mut report.failures).await;

    let mut beacons = Heard::default();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let resend = async {
            match resend_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let passive = async {
            match heard.recv().await {
                Some(datagram) => Ok(datagram),
                None => std::future::pending().await,
            }
        };
        let datagram: io::Result<(Vec<u8>, SocketAddr)> = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = resend => {
                resend_at = None;
                let mut ignored = Vec::new();
                send_all(&query_socket, &query, &destinations, &mut ignored).await;
                continue;
            }
            r = query_socket.recv_from(&mut buf) => r.map(|(n, from)| (buf[..n].to_vec(), from)),
            r = passive => r,
        };
        let Ok((bytes, from)) = datagram else {
            continue;
        };
        if let Some(Datagram::Beacon(beacon)) = Datagram::parse(&bytes) {
            if beacon.protocol != lanchat_protocol::PROTOCOL_VERSION {
                tracing::debug!(%from, protocol = beacon.protocol, "ignored a beacon of another protocol version");
            } else {
                beacons.beacon(beacon, from);
            }
        } else {
            tracing::debug!(%from, "ignored a datagram that is not a beacon");
        }
    }
    for listener in listeners {
        listener.abort();
    }
    report.servers = beacons.servers();
    Ok(report)
}

/// The beacons heard so far, one entry per (instance, source address).
#[derive(Debug, Default)]
struct Heard {
    /// The entry and when it was first heard (an order, for "the first address heard").
    entries: HashMap<(String, IpAddr), (u64, Found)>,
    /// Sources that said `stopping` for an instance: a stale `up` from them does not bring it back.
    stopped: HashSet<(String, IpAddr)>,
    count: u64,
}

impl Heard {
    /// Add or update the entry of this beacon's (instance, source); a `stopping` beacon removes
    /// that entry only, whatever other sources say about the instance.
    fn beacon(&mut self, beacon: Beacon, from: SocketAddr) {
        let fingerprint = beacon.tls_sha256.as_deref().map(Fingerprint::parse);
        if fingerprint == Some(None) {
            // Not 64 hex digits: a broken or forged beacon, like an incomplete one.
            tracing::debug!(%from, "ignored a beacon with an unreadable tls_sha256");
            return;
        }
        let key = (beacon.instance.clone(), from.ip());
        if beacon.state == ServerState::Stopping {
            self.entries.remove(&key);
            self.stopped.insert(key);
        } else if !self.stopped.contains(&key) {
            self.count += 1;
            let first = self
                .entries
                .get(&key)
                .map_or(self.count, |(first, _)| *first);
            self.entries.insert(key, (first, found_from(beacon, from)));
        }
    }

    /// The servers to show: entries of one instance with one certificate fold into one (at a
    /// loopback address if one was heard, else the first heard, so the address shown does not
    /// change while the client listens); then every entry that shares an instance or a name with
    /// an entry from another source is marked as a conflict. Sorted by name, then address.
    fn servers(&self) -> Vec<Found> {
        let mut heard: Vec<&(u64, Found)> = self.entries.values().collect();
        heard.sort_by_key(|(first, _)| *first);
        let mut servers: Vec<Found> = Vec::new();
        for (_, new) in heard {
            let same = servers.iter_mut().find(|s| {
                s.instance == new.instance
                    && s.tls_sha256.is_some()
                    && s.tls_sha256 == new.tls_sha256
            });
            match same {
                Some(known) => {
                    if new.address.ip().is_loopback() && !known.address.ip().is_loopback() {
                        known.address = new.address;
                    }
                }
                None => servers.push(new.clone()),
            }
        }
        let claims: Vec<(String, String, IpAddr)> = servers
            .iter()
            .map(|s| (s.instance.clone(), s.name.clone(), s.address.ip()))
            .collect();
        for s in &mut servers {
            s.conflict = claims.iter().any(|(instance, name, ip)| {
                *ip != s.address.ip() && (*instance == s.instance || *name == s.name)
            });
        }
        servers.sort_by(|a, b| (&a.name, a.address).cmp(&(&b.name, b.address)));
        servers
    }
}

/// The other nodes of `chosen`'s cluster among `servers`, to fail over to (see `link.rs`): up,
/// not in conflict, and announcing the same certificate as `chosen` (or, like it, none), since the
/// link trusts the one pin of the server it was given. Empty when `chosen` is not a cluster node.
pub fn cluster_mates(chosen: &Found, servers: &[Found]) -> Vec<SocketAddr> {
    let Some(cluster) = &chosen.cluster else {
        return Vec::new();
    };
    servers
        .iter()
        .filter(|s| {
            s.cluster.as_ref() == Some(cluster)
                && s.address != chosen.address
                && s.instance != chosen.instance
                && s.state == ServerState::Up
                && !s.conflict
                && s.tls_sha256 == chosen.tls_sha256
        })
        .map(|s| s.address)
        .collect()
}

/// Mark each server with what the known-servers file says of its name, and list the pinned ones
/// first (keeping the order otherwise).
pub fn mark_pins(servers: &mut [Found], known: &KnownServers) {
    for s in servers.iter_mut() {
        let announced = s.tls_sha256.as_deref().and_then(Fingerprint::parse);
        s.pin = match (known.get(&s.name), announced) {
            (None, _) => PinState::New,
            (Some(_), None) => PinState::Downgraded,
            (Some(_), Some(fp)) => match known.check(&s.name, &fp) {
                Check::Match => PinState::Pinned,
                _ => PinState::Changed,
            },
        };
    }
    servers.sort_by_key(|s| s.pin != PinState::Pinned);
}

fn found_from(beacon: Beacon, from: SocketAddr) -> Found {
    // Anyone on the LAN can send a beacon: its strings are made safe for the terminal (and for
    // a line of the known-servers file) once, here, before anything prints or records them.
    Found {
        name: sanitize::name(&beacon.name),
        address: SocketAddr::new(from.ip(), beacon.port),
        users: beacon.users,
        rooms: beacon.rooms,
        auth: beacon.auth,
        state: beacon.state,
        instance: sanitize::name(&beacon.instance),
        server: sanitize::text(&beacon.server),
        protocol: beacon.protocol,
        // Lowercase, whatever case the beacon used (it was checked to be a fingerprint).
        tls_sha256: beacon
            .tls_sha256
            .as_deref()
            .and_then(Fingerprint::parse)
            .map(|fp| fp.to_string()),
        cluster: beacon.cluster.as_deref().map(sanitize::name),
        conflict: false,
        pin: PinState::New,
    }
}

async fn send_all(socket: &UdpSocket, query: &[u8], to: &[SocketAddr], failures: &mut Vec<String>) {
    for dest in to {
        if let Err(e) = socket.send_to(query, dest).await {
            failures.push(format!("{dest}: {e}"));
        }
    }
}

async fn resolve_v4(host: &str, default_port: u16) -> Option<SocketAddr> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()?),
        _ => (host, default_port),
    };
    tokio::net::lookup_host((name, port))
        .await
        .ok()?
        .find(SocketAddr::is_ipv4)
}

fn udp_socket(addr: SocketAddrV4, reuse: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if reuse {
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl Report {
    /// The explanation printed when nothing answered: what was tried, what usually blocks
    /// discovery, and how to connect by address instead.
    pub fn nothing_found(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "no lanchat server answered within {:.1} s",
            self.timeout.as_secs_f64()
        )];
        let mut tried: Vec<String> = self
            .targets
            .iter()
            .map(|t| format!("{} ({})", t.broadcast, t.interface))
            .collect();
        tried.extend(self.hosts.iter().map(|(h, a)| match a {
            Some(a) => format!("{h} ({a})"),
            None => format!("{h} (did not resolve)"),
        }));
        if tried.is_empty() {
            lines.push(
                "  tried: no broadcast-capable IPv4 interface is up and no --host was given".into(),
            );
        } else {
            lines.push(format!(
                "  tried: discover to {} on UDP port {}",
                tried.join(", "),
                self.port
            ));
        }
        lines.push(if self.listened {
            format!("  listened for server beacons on UDP port {}", self.port)
        } else {
            format!(
                "  could not listen for beacons on UDP port {} (in use without SO_REUSEPORT?)",
                self.port
            )
        });
        for failure in &self.failures {
            lines.push(format!("  send failed: {failure}"));
        }
        lines.push(format!(
            "  commonly blocked by: a firewall dropping UDP {}, or the server being on another subnet or behind a VPN",
            self.port
        ));
        lines.push(
            "  connect by address instead: lanchat HOST[:PORT], or probe hosts on other subnets: \
             lanchat discover --host HOST (or LANCHAT_HOSTS=host1,host2)"
                .into(),
        );
        lines
    }
}

/// The table `lanchat discover` prints: the certificate's short fingerprint (or `plain`) and
/// what to know before connecting (pinned, conflict, changed); a CLUSTER column when a server
/// is a cluster node (`-` for those that are not).
pub fn table(servers: &[Found]) -> Vec<String> {
    let clusters = servers.iter().any(|s| s.cluster.is_some());
    let mut rows = vec![vec![
        "#", "NAME", "ADDRESS", "USERS", "ROOMS", "AUTH", "STATE", "TLS", "TRUST",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>()];
    if clusters {
        rows[0].push("CLUSTER".into());
    }
    for (i, s) in servers.iter().enumerate() {
        let mut row = vec![
            (i + 1).to_string(),
            s.name.clone(),
            s.address.to_string(),
            s.users.to_string(),
            s.rooms.to_string(),
            if s.auth { "password" } else { "open" }.to_owned(),
            match s.state {
                ServerState::Up => "up",
                ServerState::Stopping => "stopping",
            }
            .to_owned(),
            s.tls_sha256
                .as_deref()
                .and_then(Fingerprint::parse)
                .map_or("plain".to_owned(), |fp| trust::short(&fp)),
            marks(s),
        ];
        if clusters {
            row.push(s.cluster.clone().unwrap_or_else(|| "-".into()));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// The TRUST column: `pinned`, `CONFLICT`, `CHANGED`, `NO-TLS`, comma-separated, or `-`.
fn marks(s: &Found) -> String {
    let mut marks = Vec::new();
    match s.pin {
        PinState::Pinned => marks.push("pinned"),
        PinState::Changed => marks.push("CHANGED"),
        PinState::Downgraded => marks.push("NO-TLS"),
        PinState::New => {}
    }
    if s.conflict {
        marks.push("CONFLICT");
    }
    if marks.is_empty() {
        "-".to_owned()
    } else {
        marks.join(",")
    }
}

#[cfg(test)]
mod tests;
