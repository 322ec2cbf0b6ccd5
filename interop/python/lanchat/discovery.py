"""Finding lanchat servers on the LAN through UDP discovery.

Servers announce themselves with beacon datagrams on the discovery port (7879)
and answer a ``{"type":"discover","protocol":1}`` query at once with a beacon
sent back to the query's source.  :func:`discover` sends that query to the
broadcast address of each IPv4 interface (or to the addresses you name) and to
any hosts you name (unicast, for servers on other subnets), listens for the
answers and for passive beacons, and returns the servers heard, one per
server instance.

A beacon may carry ``tls_sha256``, the fingerprint of the server's TLS
certificate, to pin (see :meth:`lanchat.Client.connect`).  Beacons are kept per
instance *and source address*, so that an address is always listed with the
fingerprint that came from it; when the beacons of one instance disagree on the
fingerprint (one of them is forged, or the LAN is not what it seems), the
server is marked :attr:`Server.conflict`.
"""

import dataclasses
import ipaddress
import json
import logging
import selectors
import socket
import struct
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from .protocol import DISCOVERY_PORT, MAX_DATAGRAM, PROTOCOL_VERSION
from .tls import parse_fingerprint

__all__ = ["Server", "discover", "broadcast_addresses", "parse_beacon", "DISCOVER_QUERY"]

log = logging.getLogger("lanchat.discovery")

DISCOVER_QUERY = json.dumps({"type": "discover", "protocol": PROTOCOL_VERSION},
                            separators=(",", ":")).encode()
"""The query datagram."""

LOOPBACK_BROADCAST = "127.255.255.255"
"""Where a server listening on 127.0.0.1 announces itself."""

# Linux ioctls and interface flags (from <linux/sockios.h> and <net/if.h>).
_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_IFF_UP = 0x1
_IFF_BROADCAST = 0x2
_IFF_LOOPBACK = 0x8


@dataclasses.dataclass(frozen=True)
class Server:
    """A lanchat server heard on the network (from its latest beacon)."""

    name: str
    """The server's display name."""
    host: str
    """The address the beacon came from: connect to ``(host, port)``."""
    port: int
    """The server's TCP port."""
    users: int
    """Registered sessions."""
    rooms: int
    """Rooms with at least one member."""
    auth: bool
    """True when a password is required."""
    instance: str
    """A UUID unique to one server process."""
    state: str
    """``"up"``, or ``"stopping"`` when it is shutting down."""
    server: str = ""
    """Software and version, like ``"lanchat/0.1.0"``."""
    protocol: int = PROTOCOL_VERSION
    tls_sha256: Optional[str] = None
    """The fingerprint of the server's TLS certificate (lowercase hex) in the beacons from
    ``host``, to pin with ``Client.connect(tls_fingerprint=...)``; None when the server
    announced no TLS (or an unreadable value).  Only as trustworthy as the LAN it came from."""
    cluster: Optional[str] = None
    """The name of the cluster this server is a node of (cluster mode), or None: nodes of one
    cluster are one chat, and a client may move from one to another."""
    conflict: bool = False
    """True when this instance's beacons disagree on ``tls_sha256`` (from different addresses,
    or from one over time): one of them is forged.  Do not pin it without asking the user."""

    @property
    def address(self) -> Tuple[str, int]:
        """``(host, port)``, ready for :meth:`lanchat.Client.connect`."""
        return self.host, self.port


def _int_field(beacon: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = beacon.get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse_beacon(datagram: bytes, source_host: str) -> Optional[Server]:
    """Return the :class:`Server` a datagram describes, or None if it is not a valid beacon.

    A beacon needs a TCP ``port``, an ``instance`` and a ``state`` of ``"up"`` or
    ``"stopping"``: a v1 server always sends them, and without them a server can be
    neither reached, de-duplicated nor told apart from one going away.
    """
    if len(datagram) > MAX_DATAGRAM:
        return None
    try:
        beacon = json.loads(datagram.decode("utf-8"))
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(beacon, dict) or beacon.get("type") != "beacon":
        return None
    port, instance, state = beacon.get("port"), beacon.get("instance"), beacon.get("state")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    if not isinstance(instance, str) or not instance or state not in ("up", "stopping"):
        return None
    try:
        tls_sha256: Optional[str] = parse_fingerprint(beacon.get("tls_sha256"))
    except ValueError:  # absent (no TLS) or not a fingerprint: not something to pin
        tls_sha256 = None
    cluster = beacon.get("cluster")  # cluster mode only; anything but a name is ignored
    return Server(
        name=str(beacon.get("name", "")),
        host=source_host,
        port=port,
        users=_int_field(beacon, "users"),
        rooms=_int_field(beacon, "rooms"),
        auth=beacon.get("auth") is True,
        instance=instance,
        state=state,
        server=str(beacon.get("server", "")),
        protocol=_int_field(beacon, "protocol", PROTOCOL_VERSION),
        tls_sha256=tls_sha256,
        cluster=cluster if isinstance(cluster, str) and cluster else None,
    )


def broadcast_addresses() -> List[str]:
    """The directed broadcast address of each up IPv4 interface, plus 127.255.255.255.

    Uses Linux ioctls; elsewhere it falls back to ``["255.255.255.255"]``.  The
    limited broadcast is avoided where possible: on a host without a default
    route, sending to it fails with ENETUNREACH.
    """
    addresses: List[str] = []
    try:
        import fcntl  # POSIX only
        interfaces = socket.if_nameindex()
    except (ImportError, OSError):
        return ["255.255.255.255"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in interfaces:
            request = struct.pack("16s24x", name.encode()[:15])
            try:
                flags_reply = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request)
                flags = struct.unpack_from("H", flags_reply, 16)[0]
                if not flags & _IFF_UP:
                    continue
                if flags & _IFF_LOOPBACK:
                    address = LOOPBACK_BROADCAST
                elif flags & _IFF_BROADCAST:
                    # Computed from address and netmask, not read with SIOCGIFBRDADDR: an
                    # address configured without a broadcast reports a useless one there.
                    addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)[20:24]
                    mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, request)[20:24]
                    address = socket.inet_ntoa(
                        bytes(a | (~m & 0xFF) for a, m in zip(addr, mask)))
                else:
                    continue
            except OSError:  # no IPv4 address on this interface, or not Linux
                continue
            if address not in addresses:
                addresses.append(address)
    return addresses or ["255.255.255.255"]


def _resolve_host(host: str, default_port: int) -> Optional[Tuple[str, int]]:
    """``HOST`` or ``HOST:PORT`` -> an IPv4 ``(address, port)``, or None if unresolvable."""
    name, _, port_text = host.partition(":")
    port = int(port_text) if port_text.isdigit() else default_port
    try:
        infos = socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        log.warning("cannot resolve %s: %s", name, exc)
        return None
    return str(infos[0][4][0]), port


def _passive_socket(address: str, port: int) -> Optional[socket.socket]:
    """A socket that hears beacons broadcast to ``address:port``, or None if it cannot bind.

    It binds the broadcast address itself, not the wildcard: several sockets share
    the discovery port (SO_REUSEPORT), and the kernel spreads *unicast* datagrams for
    a shared port over them, so a wildcard listener here could swallow a query meant
    for a server on this host.  A socket bound to a broadcast address gets broadcasts only.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
    except OSError as exc:
        log.debug("not listening for beacons on %s:%d: %s", address, port, exc)
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def discover(timeout: float = 1.0, port: int = DISCOVERY_PORT,
             hosts: Optional[Iterable[str]] = None,
             broadcast: Union[bool, Sequence[str]] = True,
             listen: bool = True, query: bool = True) -> List[Server]:
    """Find lanchat servers: query, collect beacons for ``timeout`` seconds, return them.

    - ``broadcast``: True queries every interface's broadcast address (see
      :func:`broadcast_addresses`); a list queries those addresses; False none.
    - ``hosts``: names or addresses (``HOST`` or ``HOST:PORT``) queried by unicast.
    - ``listen``: also accept beacons that servers broadcast on their own during
      the window (heard on each broadcast address in ``broadcast``).
    - ``query``: False sends nothing and only listens for those beacons.

    Servers are de-duplicated by ``instance``: the latest beacon gives the
    counts, and the address is the first one heard, or a loopback one when the
    server also answers on loopback; ``port`` and ``tls_sha256`` are those of the
    beacons from that address, and ``conflict`` says whether the instance's beacons
    disagree on ``tls_sha256`` (see :class:`_Heard`).  Those that are stopping or
    speak another protocol version are left out.  The result is sorted by name,
    then address.
    """
    targets: List[Tuple[str, int]] = []
    broadcast_targets: List[str] = []
    if broadcast is True:
        broadcast_targets = broadcast_addresses()
    elif broadcast:
        broadcast_targets = list(broadcast)
    targets += [(address, port) for address in broadcast_targets]
    for host in hosts or ():
        target = _resolve_host(host, port)
        if target is not None:
            targets.append(target)

    found: Dict[str, _Heard] = {}
    asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # ephemeral port: answers come here
    listeners = [_passive_socket(a, port) for a in broadcast_targets] if listen else []
    sockets = [asker] + [s for s in listeners if s is not None]
    try:
        asker.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        asker.setblocking(False)
        for target in targets if query else []:
            try:
                asker.sendto(DISCOVER_QUERY, target)
            except OSError as exc:
                log.warning("discover query to %s:%d failed: %s", target[0], target[1], exc)
        with selectors.DefaultSelector() as selector:
            for sock in sockets:
                selector.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for key, _ in selector.select(remaining):
                    _receive(key.fileobj, found)  # type: ignore[arg-type]
    finally:
        for sock in sockets:
            sock.close()
    servers = [heard.server() for heard in found.values()]
    return sorted(servers, key=lambda s: (s.name, _address_key(s.host), s.port))


def _receive(sock: socket.socket, found: Dict[str, "_Heard"]) -> None:
    """Read every datagram waiting on ``sock`` and record the beacons among them."""
    while True:
        try:
            datagram, (host, _) = sock.recvfrom(MAX_DATAGRAM + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. ICMP port unreachable from a unicast query
            log.debug("discovery socket error: %s", exc)
            return
        server = parse_beacon(datagram, host)
        if server is None:
            log.debug("ignoring a datagram from %s that is not a beacon", host)
        elif server.state == "stopping" or server.protocol != PROTOCOL_VERSION:
            found.pop(server.instance, None)  # going away, or a protocol we do not speak
        else:
            _record(found, server)


class _Heard:
    """Every beacon heard from one instance: the latest per source address.

    A server on several interfaces answers from each, maybe with a different port
    each.  Any of them reaches it; the first heard is listed (so the address shown
    does not change), unless a loopback one comes later: the server is on this host.
    The listed address keeps the ``port`` and ``tls_sha256`` of its own beacons,
    never another address's; the name and counts come from the latest beacon.
    """

    def __init__(self, first: Server) -> None:
        self.latest = first
        self.by_address: Dict[str, Server] = {first.host: first}  # first heard first
        self.fingerprints: Set[Optional[str]] = {first.tls_sha256}

    def add(self, server: Server) -> None:
        self.latest = server
        self.by_address[server.host] = server
        self.fingerprints.add(server.tls_sha256)

    def server(self) -> Server:
        """The instance as one :class:`Server`."""
        hosts = list(self.by_address)
        host = next((h for h in hosts if _is_loopback(h)), hosts[0])
        chosen = self.by_address[host]
        return dataclasses.replace(self.latest, host=host, port=chosen.port,
                                   tls_sha256=chosen.tls_sha256,
                                   conflict=len(self.fingerprints) > 1)


def _record(found: Dict[str, _Heard], server: Server) -> None:
    """Add a beacon to what is known of its instance."""
    heard = found.get(server.instance)
    if heard is None:
        found[server.instance] = _Heard(server)
    else:
        heard.add(server)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _address_key(host: str) -> Tuple[int, Any]:
    try:
        return 0, ipaddress.ip_address(host)
    except ValueError:
        return 1, host
