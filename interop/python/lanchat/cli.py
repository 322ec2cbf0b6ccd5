"""The command-line chat: ``python3 -m lanchat HOST[:PORT] --nick N``.

Reads lines from stdin: plain text is said to the current room, lines starting
with ``/`` are commands (``/help`` lists them).  Events are printed one per line,
readable or as raw JSON with ``--json``.  Each request waits for its reply
before the next line is read, so when stdin ends every reply has arrived; the
client then quits and exits 0.

``--tls-fingerprint HEX`` connects with TLS and pins the server's certificate
(its ``tls_sha256``).  An address ``@NAME`` finds the server by UDP discovery (by
name or instance; ``@`` alone: the only one answering) and, when its beacon
announces ``tls_sha256``, connects with TLS pinned to it.

Exit status: 0 after end of input or ``/quit``; 1 when the connection fails
or the server ends it; 2 for bad arguments, and when the server's certificate is
not the pinned one (or discovery heard conflicting fingerprints).
"""

import argparse
import json
import queue
import sys
import threading
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Sequence, TextIO, Tuple

from .client import Client, parse_address
from .discovery import Server, discover
from .errors import ConnectionClosed, FingerprintMismatch, LanchatError
from .protocol import DEFAULT_PORT, DISCOVERY_PORT
from .render import format_event, format_reply
from .tls import parse_fingerprint

__all__ = ["main", "parse_command", "HELP"]

HELP = """\
commands:
  TEXT                  say TEXT in the current room (//TEXT says /TEXT)
  /join ROOM            join ROOM and make it the current room
  /leave [ROOM]         leave ROOM (default: the current room)
  /msg NICK TEXT        send a direct message
  /nick NICK            change nick
  /status online|away|busy [TEXT]
  /topic [TEXT]         show the current room's topic, or set it
  /who [ROOM]           list members
  /rooms [after]        list rooms, a page at a time
  /history [LIMIT]      show the current room's recent messages
  /ping                 round-trip to the server
  /quit [REASON]        leave the chat
  /help                 this help"""

TLS_REQUIRED_HINT = ("the server requires TLS: pass --tls-fingerprint HEX (the tls_sha256 the"
                     " server prints at start), or connect to @NAME found by discovery")

DISCOVERY_TIMEOUT = 1.0
"""Seconds spent listening for beacons when the address is ``@NAME``."""

STDIN_LINE_LIMIT = 1024 * 1024
"""Longest stdin line read whole; longer ones are skipped (the server would refuse them anyway)."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (try --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = _ArgumentParser(
        prog="python3 -m lanchat",
        description="Chat on a lanchat server: stdin lines are sent, events are printed.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("address", metavar="HOST[:PORT]",
                        help=f"server address (port {DEFAULT_PORT} by default), "
                             "the path of its Unix socket, or @NAME: the server of that name "
                             "(or instance) found by discovery, @ alone the only one found")
    parser.add_argument("--nick", required=True, help="your nick")
    parser.add_argument("--room", help="room to join and talk in (default: the server's default room)")
    parser.add_argument("--password-file", metavar="F", help="file whose first line is the server password")
    parser.add_argument("--json", action="store_true", help="print every server frame as raw JSON")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECS",
                        help="seconds to wait for a connection or a reply (default 10)")
    parser.add_argument("--tls-fingerprint", metavar="HEX", type=_fingerprint,
                        help="connect with TLS and accept only the certificate whose SHA-256 is "
                             "HEX (64 hex digits: the tls_sha256 the server prints at start)")
    parser.add_argument("--discover-via", metavar="HOST[:PORT]", action="append",
                        help="with @NAME: send the discovery query to HOST by unicast (discovery "
                             f"port {DISCOVERY_PORT} by default) instead of broadcasting it; "
                             "may be repeated")
    return parser


def _fingerprint(text: str) -> str:
    try:
        return parse_fingerprint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_command(line: str, room: Optional[str]) -> Tuple[str, Dict[str, Any]]:
    """Turn one input line into ``(request type, fields)``.

    ``room`` is the current room.  Raises ``ValueError`` with a one-line message
    for an unknown command or a missing argument.  ``("help", {})`` asks for help.
    """
    if not line.startswith("/") or line.startswith("//"):
        text = line[1:] if line.startswith("//") else line
        if room is None:
            raise ValueError("no current room: /join one first")
        return "say", {"room": room, "text": text}
    name, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    first, _, tail = rest.partition(" ")
    tail = tail.strip()

    def need(value: str, what: str) -> str:
        if not value:
            raise ValueError(f"/{name} needs {what} (see /help)")
        return value

    def current(value: str) -> str:
        if value:
            return value
        if room is None:
            raise ValueError(f"/{name} needs a room: no current room")
        return room

    if name == "join":
        return "join", {"room": need(rest, "a room")}
    if name in ("leave", "part"):
        return "leave", {"room": current(rest)}
    if name in ("msg", "dm"):
        return "dm", {"to": need(first, "a nick"), "text": need(tail, "a text")}
    if name == "nick":
        return "nick", {"nick": need(rest, "a nick")}
    if name == "status":
        return "status", {"status": need(first, "online, away or busy"), "text": tail or None}
    if name == "topic":
        return "topic", {"room": current(""), "topic": rest or None}
    if name == "who":
        return "who", {"room": current(rest)}
    if name == "rooms":
        return "rooms", {"after": rest or None}
    if name == "history":
        if rest and not rest.isdigit():
            raise ValueError("/history takes a number of messages")
        return "history", {"room": current(""), "limit": int(rest) if rest else None}
    if name == "ping":
        return "ping", {}
    if name == "quit":
        return "quit", {"reason": rest or None}
    if name == "help":
        return "help", {}
    raise ValueError(f"unknown command /{name} (see /help)")


class _Output:
    """Thread-safe printing of frames, readable or as JSON, one per line."""

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self._stream = stream
        self._json = as_json
        self._lock = threading.Lock()

    @property
    def as_json(self) -> bool:
        """True when frames are printed as raw JSON."""
        return self._json

    def lines(self, lines: List[str]) -> None:
        with self._lock:
            for line in lines:
                self._stream.write(line + "\n")
            self._stream.flush()

    def event(self, frame: Mapping[str, Any]) -> None:
        self.lines([self._dump(frame) if self._json else format_event(frame)])

    def reply(self, frame: Mapping[str, Any]) -> None:
        self.lines([self._dump(frame)] if self._json else format_reply(frame))

    @staticmethod
    def _dump(frame: Mapping[str, Any]) -> str:
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _read_stdin(stream: Any, inbox: "queue.Queue[Tuple[str, str]]") -> None:
    """Feed stdin lines into ``inbox`` as ("line", text), then ("eof", "")."""
    while True:
        raw = stream.readline(STDIN_LINE_LIMIT + 1)
        if not raw:
            break
        if len(raw) > STDIN_LINE_LIMIT and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(STDIN_LINE_LIMIT + 1)
            inbox.put(("error", f"input line over {STDIN_LINE_LIMIT} bytes skipped"))
            continue
        inbox.put(("line", raw.decode("utf-8", "replace").rstrip("\r\n")))
    inbox.put(("eof", ""))


def _read_password(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.readline().rstrip("\r\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command-line chat; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    password = None
    if args.password_file:
        try:
            password = _read_password(args.password_file)
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read password file: {exc}")
    unix_path = args.address if "/" in args.address else None
    if unix_path is not None and args.tls_fingerprint:
        parser.error("--tls-fingerprint is for TCP: a Unix socket is always plain")
    if args.discover_via and not args.address.startswith("@"):
        parser.error("--discover-via goes with an address @NAME")
    pin: Optional[str] = args.tls_fingerprint
    if args.address.startswith("@"):
        server = _find(args.address[1:], args.discover_via)
        if server is None:
            return 1
        if pin is None and server.conflict:
            print(f"lanchat: beacons for {args.address} disagree on its certificate"
                  " (tls_sha256): one is forged; pass --tls-fingerprint with the value the"
                  " server printed", file=sys.stderr)
            return 2
        host, port = server.address
        pin = pin or server.tls_sha256
    elif unix_path is None:
        try:
            host, port = parse_address(args.address)
        except ValueError as exc:
            parser.error(str(exc))
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # never die on an unprintable nick

    out = _Output(sys.stdout, args.json)
    inbox: "queue.Queue[Tuple[str, str]]" = queue.Queue()
    client = Client(timeout=args.timeout, on_event=out.event,
                    on_close=lambda reason: inbox.put(("closed", "")))
    try:
        if unix_path is not None:
            client.connect_unix(unix_path)
        else:
            client.connect(host, port, tls_fingerprint=pin)
    except FingerprintMismatch as exc:
        print(f"lanchat: {host}:{port} presented a certificate with SHA-256 {exc.presented},"
              f" not the pinned {exc.expected}: not connecting (if its certificate changed on"
              " purpose, pass the new fingerprint)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lanchat: cannot connect to {args.address}: {exc}", file=sys.stderr)
        return 1
    with client:
        try:
            out.reply(client.hello(args.nick, password))
            rooms = (client.welcome or {}).get("rooms") or []
            room: Optional[str] = rooms[0] if rooms else None
            if args.room:
                out.reply(client.join(args.room))
                room = args.room
        except LanchatError as exc:
            if exc.code == "tls_required":  # the bye's reason, or the error's code
                print(f"lanchat: {TLS_REQUIRED_HINT}", file=sys.stderr)
            else:
                print(f"lanchat: {exc}", file=sys.stderr)
            return 1
        threading.Thread(target=_read_stdin, args=(sys.stdin.buffer, inbox),
                         name="lanchat-stdin", daemon=True).start()
        return _chat(client, out, inbox, room)


def _find(name: str, via: Optional[List[str]]) -> Optional[Server]:
    """The server called ``name`` (or with that instance) heard by discovery; None, with a
    message, when none or several are."""
    if via:
        servers = discover(DISCOVERY_TIMEOUT, hosts=via, broadcast=False, listen=False)
    else:
        servers = discover(DISCOVERY_TIMEOUT)
    matches = [s for s in servers if not name or name in (s.name, s.instance)]
    if len(matches) == 1:
        return matches[0]
    heard = ", ".join(f"{s.name} ({s.host}:{s.port})" for s in servers) or "none"
    what = f"server named {name!r}" if name else "server"
    if matches:
        print(f"lanchat: more than one {what} answered ({heard}): name one by its instance"
              " or connect by address", file=sys.stderr)
    else:
        print(f"lanchat: no {what} answered discovery (heard: {heard})", file=sys.stderr)
    return None


def _chat(client: Client, out: _Output, inbox: "queue.Queue[Tuple[str, str]]",
          room: Optional[str]) -> int:
    """The input loop: one line at a time, each request answered before the next."""
    while True:
        kind, line = inbox.get()
        if kind == "closed":
            reason = client.close_reason
            print(f"lanchat: disconnected: {reason}", file=sys.stderr)
            return 0 if reason is not None and reason.code == "quit" else 1
        if kind == "error":
            print(f"lanchat: {line}", file=sys.stderr)
            continue
        if kind == "eof":
            line = "/quit"
        if not line.strip():
            continue
        try:
            type_, fields = parse_command(line, room)
        except ValueError as exc:
            print(f"lanchat: {exc}", file=sys.stderr)
            continue
        if type_ == "help":
            print(HELP, file=sys.stderr)
            continue
        try:
            if type_ == "quit":
                out.reply(client.quit(**fields))
                return 0
            out.reply(client.request(type_, **fields))
        except ConnectionClosed as exc:
            print(f"lanchat: disconnected: {exc}", file=sys.stderr)
            return 1
        except LanchatError as exc:
            if exc.frame is not None and out.as_json:
                out.reply(exc.frame)
            else:
                print(f"lanchat: {type_} failed: {exc}", file=sys.stderr)
            continue
        if type_ == "join":
            room = fields["room"]
        elif type_ == "leave" and fields["room"] == room:
            room = None
