//! UDP presence datagrams: the server's `beacon` and the client's `discover` query.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Largest presence datagram either side sends or accepts.
pub const MAX_DATAGRAM: usize = 1200;

/// Whether the server is serving or about to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Up,
    Stopping,
}

/// A server's announcement of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub protocol: u64,
    pub server: String,
    pub name: String,
    /// One per server process: lets a client de-duplicate beacons heard on several interfaces.
    pub instance: String,
    /// The TCP port; the address is the datagram's source address.
    pub port: u16,
    pub users: usize,
    pub rooms: usize,
    pub auth: bool,
    pub state: ServerState,
}

/// A presence datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Datagram {
    Beacon(Beacon),
    Discover { protocol: u64 },
}

impl Datagram {
    /// Parse a datagram; `None` for anything too large, not JSON, or of another type.
    pub fn parse(bytes: &[u8]) -> Option<Datagram> {
        if bytes.len() > MAX_DATAGRAM {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("datagrams serialise")
    }
}

/// An up IPv4 interface: its name, address, netmask and directed broadcast address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub addr: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub broadcast: Ipv4Addr,
}

impl Interface {
    /// Whether `ip` is on this interface's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// The up IPv4 interfaces that can broadcast (loopback included), from getifaddrs.
///
/// The broadcast address is computed from the address and netmask rather than read from the
/// interface: an address configured without one (`ip addr add 10.0.0.2/24`, no `brd +`) reports
/// its own address there, which would make every query go nowhere.
pub fn ipv4_interfaces() -> Vec<Interface> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs; we only read
    // entries whose address family we have checked.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            let flags = ifa.ifa_flags;
            let up = flags & libc::IFF_UP as u32 != 0;
            let can_broadcast =
                flags & (libc::IFF_BROADCAST as u32 | libc::IFF_LOOPBACK as u32) != 0;
            if !up || !can_broadcast || ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
                continue;
            }
            if i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let addr = sockaddr_v4(ifa.ifa_addr);
            let netmask = sockaddr_v4(ifa.ifa_netmask);
            let broadcast = Ipv4Addr::from(u32::from(addr) | !u32::from(netmask));
            if broadcast == addr {
                continue; // a /32: nobody else to reach
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            out.push(Interface {
                name,
                addr,
                netmask,
                broadcast,
            });
        }
        libc::freeifaddrs(head);
    }
    out
}

/// SAFETY: `sa` must point to a `sockaddr_in`.
unsafe fn sockaddr_v4(sa: *const libc::sockaddr) -> Ipv4Addr {
    let sin = &*(sa as *const libc::sockaddr_in);
    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let b = Datagram::Beacon(Beacon {
            protocol: 1,
            server: "lanchat/0.1.0".into(),
            name: "n".into(),
            instance: "i".into(),
            port: 7878,
            users: 2,
            rooms: 1,
            auth: false,
            state: ServerState::Up,
        });
        assert_eq!(Datagram::parse(&b.encode()), Some(b));
        assert_eq!(
            Datagram::parse(br#"{"type":"discover","protocol":1}"#),
            Some(Datagram::Discover { protocol: 1 })
        );
        assert_eq!(Datagram::parse(b"garbage"), None);
        assert_eq!(Datagram::parse(br#"{"type":"other"}"#), None);
        assert_eq!(Datagram::parse(&[b' '; 1201]), None);
    }

    #[test]
    fn this_host_has_loopback() {
        let lo = ipv4_interfaces()
            .into_iter()
            .find(|i| i.addr == Ipv4Addr::LOCALHOST)
            .expect("loopback");
        assert_eq!(lo.broadcast, Ipv4Addr::new(127, 255, 255, 255));
        assert!(lo.contains(Ipv4Addr::new(127, 1, 2, 3)));
    }
}
