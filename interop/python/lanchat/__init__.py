"""lanchat: a standard-library client for the lanchat LAN chat protocol (v1).

- :class:`Client`: one session over TCP (plain, or TLS pinned by the server's
  certificate fingerprint) or a Unix socket; requests matched to replies by id,
  events through an iterator or a callback.
- :func:`discover`: find servers on the LAN by UDP discovery.
- :class:`LanchatError` (``.code``, ``.message``, ``.retry_after``), :class:`ConnectionClosed`
  (``.code`` is the bye reason), :class:`LanchatTimeout` and :class:`FingerprintMismatch`
  (``.expected``, ``.presented``).
- :mod:`lanchat.protocol`: the wire format, pure functions and constants.
- ``python3 -m lanchat HOST[:PORT] --nick N``: the command-line chat (:mod:`lanchat.cli`).

Example::

    from lanchat import Client

    with Client().connect("127.0.0.1") as chat:
        chat.hello("ann")
        chat.say("lobby", "hello, world")
        for event in chat.events(timeout=30):
            print(event)
"""

import logging

from .client import CLIENT_NAME, Client, parse_address
from .discovery import Server, discover
from .errors import ConnectionClosed, FingerprintMismatch, LanchatError, LanchatTimeout
from .tls import TRUST_ON_FIRST_USE, parse_fingerprint
from .protocol import (
    DEFAULT_PORT, DISCOVERY_PORT, NULL, PRESENCE_PORT, PROTOCOL_VERSION, Frame,
)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())  # the application decides

__all__ = [
    "Client",
    "CLIENT_NAME",
    "ConnectionClosed",
    "DEFAULT_PORT",
    "FingerprintMismatch",
    "Frame",
    "LanchatError",
    "LanchatTimeout",
    "NULL",
    "DISCOVERY_PORT",
    "PRESENCE_PORT",
    "PROTOCOL_VERSION",
    "Server",
    "discover",
    "TRUST_ON_FIRST_USE",
    "parse_address",
    "parse_fingerprint",
]
