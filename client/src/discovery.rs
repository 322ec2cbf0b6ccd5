//! LAN discovery (the client side of UDP discovery): send `discover` to the directed broadcast
//! address of every up IPv4 interface and to named hosts, listen for passive beacons too, and
//! return the servers heard from within a timeout, one per server instance.
//!
//! Why separate sockets: answers to a query come unicast to the query's source port, so the query
//! goes out from an ephemeral port of its own. Passive beacons are broadcast to the discovery port,
//! which servers on this host also hold (SO_REUSEPORT, bound to 0.0.0.0). A listener bound to
//! 0.0.0.0 would join their reuse group and could be handed a unicast query meant for a server;
//! one bound to the broadcast address gets the broadcasts and nothing else.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use lanchat_protocol::discovery::{Beacon, Datagram, ServerState, MAX_DATAGRAM};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

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

    let mut found: HashMap<String, Found> = HashMap::new();
    let mut stopped: HashSet<String> = HashSet::new();
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
            } else if beacon.state == ServerState::Stopping {
                // Going away: forget it, and do not let a stale "up" bring it back.
                found.remove(&beacon.instance);
                stopped.insert(beacon.instance);
            } else if !stopped.contains(&beacon.instance) {
                merge(&mut found, found_from(beacon, from));
            }
        } else {
            tracing::debug!(%from, "ignored a datagram that is not a beacon");
        }
    }
    for listener in listeners {
        listener.abort();
    }
    let mut servers: Vec<Found> = found.into_values().collect();
    servers.sort_by(|a, b| (&a.name, a.address).cmp(&(&b.name, b.address)));
    report.servers = servers;
    Ok(report)
}

/// Add a server heard from, or update one already listed. A server reached on several interfaces
/// answers from several addresses: keep a loopback one if there is one (it runs on this host),
/// otherwise the first heard, so the address shown does not change while the client listens; take
/// the rest (users, rooms, name) from the latest beacon (PROTOCOL.md, "Finding servers").
fn merge(found: &mut HashMap<String, Found>, new: Found) {
    match found.get_mut(&new.instance) {
        Some(known) => {
            let address = if new.address.ip().is_loopback() && !known.address.ip().is_loopback() {
                new.address
            } else {
                known.address
            };
            *known = Found { address, ..new };
        }
        None => {
            found.insert(new.instance.clone(), new);
        }
    }
}

fn found_from(beacon: Beacon, from: SocketAddr) -> Found {
    Found {
        name: beacon.name,
        address: SocketAddr::new(from.ip(), beacon.port),
        users: beacon.users,
        rooms: beacon.rooms,
        auth: beacon.auth,
        state: beacon.state,
        instance: beacon.instance,
        server: beacon.server,
        protocol: beacon.protocol,
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

/// The table `lanchat discover` prints.
pub fn table(servers: &[Found]) -> Vec<String> {
    let mut rows = vec![[
        "#".to_owned(),
        "NAME".to_owned(),
        "ADDRESS".to_owned(),
        "USERS".to_owned(),
        "ROOMS".to_owned(),
        "AUTH".to_owned(),
        "STATE".to_owned(),
    ]];
    for (i, s) in servers.iter().enumerate() {
        rows.push([
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
        ]);
    }
    let widths: Vec<usize> = (0..7)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(addr: &str, users: usize) -> Found {
        let beacon = Beacon {
            protocol: 1,
            server: "lanchat/0.1.0".into(),
            name: format!("box-{users}"),
            instance: "i1".into(),
            port: 7878,
            users,
            rooms: 1,
            auth: false,
            state: ServerState::Up,
            tls_sha256: None,
        };
        found_from(beacon, addr.parse().unwrap())
    }

    #[test]
    fn one_entry_per_instance_keeping_loopback_or_the_first_address() {
        let mut found = HashMap::new();
        merge(&mut found, heard("10.0.0.5:1", 1));
        merge(&mut found, heard("10.0.1.5:1", 2));
        assert_eq!(found.len(), 1);
        let f = &found["i1"];
        assert_eq!(
            f.address,
            "10.0.0.5:7878".parse().unwrap(),
            "the first heard stays"
        );
        assert_eq!(
            (f.users, f.name.as_str()),
            (2, "box-2"),
            "the rest is the latest"
        );
        merge(&mut found, heard("127.0.0.1:1", 3));
        assert_eq!(found["i1"].address, "127.0.0.1:7878".parse().unwrap());
        merge(&mut found, heard("10.0.0.5:1", 4));
        assert_eq!(
            found["i1"].address,
            "127.0.0.1:7878".parse().unwrap(),
            "loopback stays"
        );
        assert_eq!(found["i1"].users, 4);
    }

    fn beacon(instance: &str, port: u16, state: ServerState) -> Vec<u8> {
        Datagram::Beacon(Beacon {
            protocol: 1,
            server: "lanchat/0.1.0".into(),
            name: format!("srv-{instance}"),
            instance: instance.into(),
            port,
            users: 2,
            rooms: 1,
            auth: false,
            state,
            tls_sha256: None,
        })
        .encode()
    }

    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn loopback_gets_its_network_top_as_broadcast() {
        let targets = broadcast_targets(Some(&["lo".to_owned()])).unwrap();
        assert_eq!(
            targets,
            vec![Target {
                interface: "lo".into(),
                broadcast: Ipv4Addr::new(127, 255, 255, 255)
            }]
        );
        assert!(broadcast_targets(Some(&[])).unwrap().is_empty());
    }

    #[test]
    fn hosts_list_from_env() {
        assert_eq!(
            hosts_from_env(Some("a, b c,,d:1")),
            vec!["a", "b", "c", "d:1"]
        );
        assert!(hosts_from_env(None).is_empty());
    }

    /// A fake server on 127.0.0.1 answering discover by unicast, plus a garbage datagram and a
    /// duplicate answer: one server is reported, at the source IP with the beacon's port.
    #[tokio::test]
    async fn unicast_query_is_answered_and_deduplicated() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let answer = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                assert_eq!(
                    Datagram::parse(&buf[..n]),
                    Some(Datagram::Discover { protocol: 1 })
                );
                server.send_to(b"not json", from).await.unwrap();
                server
                    .send_to(&beacon("one", 4321, ServerState::Up), from)
                    .await
                    .unwrap();
            }
        });
        let opts = Options {
            timeout: Duration::from_millis(400),
            port,
            hosts: vec!["127.0.0.1".into()],
            interfaces: None,
            broadcast: false,
        };
        let report = discover(&opts).await.unwrap();
        answer.await.unwrap();
        assert_eq!(report.servers.len(), 1, "{:?}", report.servers);
        let s = &report.servers[0];
        assert_eq!(s.address, "127.0.0.1:4321".parse().unwrap());
        assert_eq!((s.name.as_str(), s.users, s.auth), ("srv-one", 2, false));
        assert!(report.targets.is_empty());
    }

    /// A beacon broadcast on loopback reaches the passive listener; a server that says it is
    /// stopping is dropped.
    #[tokio::test]
    async fn passive_beacons_are_heard() {
        let port = free_udp_port();
        let opts = Options {
            timeout: Duration::from_millis(600),
            port,
            hosts: vec![],
            interfaces: Some(vec!["lo".into()]),
            broadcast: true,
        };
        let announcer = tokio::spawn(async move {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_broadcast(true).unwrap();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                for (instance, state) in
                    [("two", ServerState::Up), ("three", ServerState::Stopping)]
                {
                    s.send_to(&beacon(instance, 7000, state), ("127.255.255.255", port))
                        .unwrap();
                }
            }
        });
        let report = discover(&opts).await.unwrap();
        announcer.await.unwrap();
        assert!(report.listened);
        assert_eq!(report.servers.len(), 1, "{:?}", report.servers);
        assert_eq!(report.servers[0].instance, "two");
        assert_eq!(report.servers[0].address.port(), 7000);
    }

    #[test]
    fn explanation_and_table() {
        let report = Report {
            targets: vec![Target {
                interface: "lo".into(),
                broadcast: Ipv4Addr::new(127, 255, 255, 255),
            }],
            hosts: vec![("nowhere.invalid".into(), None)],
            port: 7879,
            listened: true,
            timeout: Duration::from_secs(1),
            ..Report::default()
        };
        let text = report.nothing_found().join("\n");
        assert!(text.contains("127.255.255.255 (lo)"));
        assert!(text.contains("nowhere.invalid (did not resolve)"));
        assert!(text.contains("UDP port 7879"));
        assert!(text.contains("firewall"));
        assert!(text.contains("lanchat HOST[:PORT]"));
        let rows = table(&[Found {
            name: "office".into(),
            address: "127.0.0.1:7878".parse().unwrap(),
            users: 3,
            rooms: 2,
            auth: true,
            state: ServerState::Up,
            instance: "i".into(),
            server: "lanchat/0.1.0".into(),
            protocol: 1,
        }]);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("#  NAME"));
        assert!(
            rows[1].contains("office")
                && rows[1].contains("127.0.0.1:7878")
                && rows[1].contains("password")
        );
    }
}
