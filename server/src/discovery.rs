//! UDP discovery: beacons on the interfaces the TCP listeners serve, and answers to `discover`.
//!
//! One UDP socket bound to the wildcard address (broadcasts reach only wildcard-bound sockets)
//! with SO_REUSEADDR and SO_REUSEPORT, so several servers on one host share the discovery port.
//! Beacons go to each served interface's directed broadcast address: 255.255.255.255 fails with
//! ENETUNREACH on a host without a default route, which is common on an isolated LAN.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lanchat_net::{ipv4_interfaces, Interface};
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
    ignored: AtomicU64,
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
            ignored: AtomicU64::new(0),
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
        let (users, rooms) = {
            let st = self.shared.chat.lock();
            (st.users(), st.active_rooms())
        };
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
        })
        .encode()
    }

    async fn announce(&self, state: ServerState) {
        let interfaces = ipv4_interfaces();
        for (broadcast, port) in targets(&self.listeners, &interfaces) {
            let dest = SocketAddrV4::new(broadcast, self.config.port);
            if let Err(e) = self.socket.send_to(&self.beacon(port, state), dest).await {
                debug!(%dest, error = %e, "beacon not sent");
            }
        }
    }

    async fn run(self, stop: CancellationToken) {
        let interfaces = ipv4_interfaces();
        let served = targets(&self.listeners, &interfaces);
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
        debug!(
            ignored = self.ignored.load(Ordering::Relaxed),
            "discovery stopped"
        );
    }

    async fn on_datagram(&self, bytes: &[u8], src: SocketAddr) {
        let SocketAddr::V4(src) = src else { return };
        match Datagram::parse(bytes) {
            Some(Datagram::Discover { .. }) => {
                let interfaces = ipv4_interfaces();
                let Some(port) = port_for(&self.listeners, &interfaces, *src.ip()) else {
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
            None => {
                let n = self.ignored.fetch_add(1, Ordering::Relaxed) + 1;
                debug!(%src, len = bytes.len(), ignored = n, "ignored discovery datagram");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
