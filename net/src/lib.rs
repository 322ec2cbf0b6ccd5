//! This host's IPv4 interfaces, for UDP discovery: which directed broadcast address reaches
//! which subnet. Kept out of `lanchat-protocol`, which is pure, safe Rust any tool can depend on;
//! the system call lives in `nix`.

use std::net::Ipv4Addr;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::SockaddrStorage;

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

/// The up IPv4 interfaces that can broadcast (loopback included).
///
/// The broadcast address is computed from the address and netmask rather than read from the
/// interface: an address configured without one (`ip addr add 10.0.0.2/24`, no `brd +`) reports
/// its own address there, which would make every query go nowhere.
pub fn ipv4_interfaces() -> Vec<Interface> {
    let Ok(addrs) = getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in addrs {
        let up = ifa.flags.contains(InterfaceFlags::IFF_UP);
        let can_broadcast = ifa
            .flags
            .intersects(InterfaceFlags::IFF_BROADCAST | InterfaceFlags::IFF_LOOPBACK);
        if !up || !can_broadcast {
            continue;
        }
        let (Some(addr), Some(netmask)) = (v4(ifa.address.as_ref()), v4(ifa.netmask.as_ref()))
        else {
            continue;
        };
        let broadcast = Ipv4Addr::from(u32::from(addr) | !u32::from(netmask));
        if broadcast == addr {
            continue; // a /32: nobody else to reach
        }
        out.push(Interface {
            name: ifa.interface_name,
            addr,
            netmask,
            broadcast,
        });
    }
    out
}

fn v4(sa: Option<&SockaddrStorage>) -> Option<Ipv4Addr> {
    sa?.as_sockaddr_in().map(|sin| sin.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_loopback() {
        let lo = ipv4_interfaces()
            .into_iter()
            .find(|i| i.addr == Ipv4Addr::LOCALHOST)
            .expect("loopback");
        assert_eq!(lo.broadcast, Ipv4Addr::new(127, 255, 255, 255));
        assert!(lo.contains(Ipv4Addr::new(127, 1, 2, 3)));
        assert!(!lo.contains(Ipv4Addr::new(10, 0, 0, 1)));
    }
}
