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

When the connection is lost (the server shuts down or restarts, the network
fails) the CLI says so on stderr and reconnects with back-off (1, 2, 4 ... 30 s,
``--reconnect N`` tries, default 10), joins the same rooms again and prints the
messages it missed (``history`` after the last message id seen in each room).
Events without a server time (join, leave, quit, nick, presence, topic) are
stamped with the local time, like messages; ``/me waves`` says ``/me waves`` as
the Rust client does, and such messages are shown as ``* nick waves``.

Exit status: 0 after end of input or ``/quit``; 1 when the connection fails
or the server ends it (and reconnecting failed, or was not tried); 2 for bad
arguments, and when the server's certificate is not the pinned one (or discovery
heard conflicting fingerprints).
"""

import argparse
import collections
import json
import os
import queue
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Sequence, TextIO, Tuple

from .client import Client, parse_address
from .discovery import Server, discover
from .errors import ConnectionClosed, FingerprintMismatch, LanchatError
from .protocol import DEFAULT_PORT, DISCOVERY_PORT, NULL, Frame
from .render import format_event, format_reply
from .tls import parse_fingerprint

__all__ = ["main", "parse_command", "HELP"]

HELP = """\
commands:
  TEXT                  say TEXT in the current room (//TEXT says /TEXT)
  /join ROOM [KEY]      join ROOM (with its key, if it has one) and make it the current room
  /leave [ROOM]         leave ROOM (default: the current room)
  /msg NICK TEXT        send a direct message
  /me ACTION            say an action in the current room: /me waves
  /nick NICK            change nick
  /status online|away|busy [TEXT]
  /topic [TEXT]         show the current room's topic, or set it
  /who [ROOM]           list members
  /rooms [after]        list rooms, a page at a time
  /history [LIMIT]      show the current room's recent messages
  /mode [+i|-i] [+k KEY|-k] [+t|-t]
                        show or (operators) set the current room's modes: invite-only,
                        key, topic lock
  /invite NICK          let NICK join the current room once (operators)
  /kick NICK [REASON]   remove NICK from the current room (operators)
  /op NICK              make NICK an operator of the current room (operators)
  /register SECRET      register your nick: from then on it needs SECRET (keep it)
  /unregister           give your registered nick up
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
    parser.add_argument("--secret-file", metavar="F",
                        help="file whose first line is the secret of your registered nick"
                             " (see /register); sent with hello")
    parser.add_argument("--json", action="store_true", help="print every server frame as raw JSON")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECS",
                        help="seconds to wait for a connection or a reply (default 10)")
    parser.add_argument("--tls-fingerprint", metavar="HEX", type=_fingerprint,
                        help="connect with TLS and accept only the certificate whose SHA-256 is "
                             "HEX (64 hex digits: the tls_sha256 the server prints at start)")
    parser.add_argument("--reconnect", type=_count, default=RECONNECT_ATTEMPTS, metavar="N",
                        help="when the server goes away, try N times to reconnect, waiting"
                             " 1, 2, 4 ... up to 30 s between tries, then join the same rooms"
                             " and show the messages missed (default"
                             f" {RECONNECT_ATTEMPTS}; 0: exit at once)")
    parser.add_argument("--discover-via", metavar="HOST[:PORT]", action="append",
                        help="with @NAME: send the discovery query to HOST by unicast (discovery "
                             f"port {DISCOVERY_PORT} by default) instead of broadcasting it; "
                             "may be repeated")
    return parser


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of attempts: {text!r}")
    return int(text)


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
        return "join", {"room": need(first, "a room"), "key": tail or None}
    if name in ("leave", "part"):
        return "leave", {"room": current(rest)}
    if name in ("msg", "dm"):
        return "dm", {"to": need(first, "a nick"), "text": need(tail, "a text")}
    if name == "me":
        if room is None:
            raise ValueError("/me needs a room: no current room")
        # As the Rust client does: a plain say whose text is "/me ACTION".
        return "say", {"room": room, "text": f"/me {need(rest, 'an action')}"}
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
    if name == "mode":
        return "mode", _mode_fields(current(""), rest.split())
    if name in ("invite", "op"):
        return name, {"room": current(""), "nick": need(rest, "a nick")}
    if name == "kick":
        return "kick", {"room": current(""), "nick": need(first, "a nick"), "reason": tail or None}
    if name == "register":
        return "register", {"secret": need(rest, "a secret (8 to 256 bytes)")}
    if name == "unregister":
        return "unregister", {}
    if name == "ping":
        return "ping", {}
    if name == "quit":
        return "quit", {"reason": rest or None}
    if name == "help":
        return "help", {}
    raise ValueError(f"unknown command /{name} (see /help)")


def _mode_fields(room: str, words: List[str]) -> Dict[str, Any]:
    """The fields of ``mode`` from ``+i -i +k KEY -k +t -t`` (none: read the modes)."""
    fields: Dict[str, Any] = {"room": room}
    flags = {"+i": ("invite_only", True), "-i": ("invite_only", False),
             "+t": ("topic_lock", True), "-t": ("topic_lock", False), "-k": ("key", NULL)}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "+k" and i + 1 < len(words):
            fields["key"] = words[i + 1]
            i += 2
            continue
        if word not in flags:
            raise ValueError("usage: /mode [+i|-i] [+k KEY|-k] [+t|-t]")
        field, value = flags[word]
        fields[field] = value
        i += 1
    return fields


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


def _read_stdin(fd: int, inbox: "queue.Queue[Tuple[str, str]]") -> None:
    """Feed the lines of file descriptor ``fd`` into ``inbox`` as ("line", text), then ("eof", "").

    It reads the descriptor with ``os.read``, never through ``sys.stdin``: this thread is a
    daemon still blocked in a read when the program exits, and one blocked inside
    ``sys.stdin.buffer`` holds that buffer's lock, which makes the interpreter abort at exit
    (``Fatal Python error: _enter_buffered_busy``, status 134).
    """
    pending = bytearray()
    skipping = False  # inside a line over STDIN_LINE_LIMIT, dropping it up to its LF
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            inbox.put(("error", f"cannot read stdin: {exc}"))
            break
        if not chunk:
            break
        scan = len(pending)
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", max(start, scan))
            if end < 0:
                break
            if skipping:
                skipping = False
            elif end - start > STDIN_LINE_LIMIT:
                inbox.put(("error", f"input line over {STDIN_LINE_LIMIT} bytes skipped"))
            else:
                line = bytes(pending[start:end]).decode("utf-8", "replace").rstrip("\r")
                inbox.put(("line", line))
            start = end + 1
        del pending[:start]
        if len(pending) > STDIN_LINE_LIMIT:
            if not skipping:
                inbox.put(("error", f"input line over {STDIN_LINE_LIMIT} bytes skipped"))
            skipping = True
            pending.clear()
    if pending and not skipping:  # a last line without LF
        inbox.put(("line", bytes(pending).decode("utf-8", "replace").rstrip("\r")))
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
    secret = None
    if args.secret_file:
        try:
            secret = _read_password(args.secret_file)
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read secret file: {exc}")
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
    if unix_path is not None:
        target: Tuple[Optional[str], Optional[str], Optional[int]] = (unix_path, None, None)
    else:
        target = (None, host, port)
    chat = _Chat(out, inbox, target, pin, args.nick, password, args.timeout, args.reconnect)
    chat.secret = secret
    try:
        chat.connect()
    except FingerprintMismatch as exc:
        print(f"lanchat: {host}:{port} presented a certificate with SHA-256 {exc.presented},"
              f" not the pinned {exc.expected}: not connecting (if its certificate changed on"
              " purpose, pass the new fingerprint)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lanchat: cannot connect to {args.address}: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            chat.register(args.room)
        except LanchatError as exc:
            if exc.code == "tls_required":  # the bye's reason, or the error's code
                print(f"lanchat: {TLS_REQUIRED_HINT}", file=sys.stderr)
            else:
                print(f"lanchat: {exc}", file=sys.stderr)
            return 1
        threading.Thread(target=_read_stdin, args=(sys.stdin.fileno(), inbox),
                         name="lanchat-stdin", daemon=True).start()
        return chat.run()
    finally:
        chat.close()


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


RECONNECT_ATTEMPTS = 10
"""Default number of reconnection attempts after the connection is lost."""

BACKOFF_MAX = 30.0
"""Longest wait between reconnection attempts, in seconds (1, 2, 4 ... 30, as PROTOCOL.md says)."""

NO_RECONNECT = frozenset({"quit", "closed", "auth_failed", "too_many_errors",
                          "protocol_unsupported", "tls_required"})
"""``bye`` reasons after which reconnecting would not help (PROTOCOL.md, bye)."""

SEEN_IDS = 10000
"""How many message ids are remembered to drop duplicates (live and catch-up)."""

HISTORY_PAGE = 200
"""Messages per catch-up ``history`` request (the protocol's maximum)."""


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (0-based): 1, 2, 4 ... 30."""
    return min(BACKOFF_MAX, 2.0 ** min(attempt, 16))


def _describe(reason: Optional[LanchatError]) -> str:
    """A sentence for why the connection ended."""
    if reason is None:
        return "the connection was lost"
    if reason.code == "shutting_down":
        said = reason.message.strip().rstrip(".")
        extra = f" ({said})" if said and said.lower() != "the server is shutting down" else ""
        return f"the server is shutting down{extra}"
    if reason.code == "connection_lost":
        return f"the connection was lost ({reason.message or 'no reason given'})"
    return f"the server ended the session: {reason.code}" + (
        f" ({reason.message})" if reason.message else "")


class _Chat:
    """The command-line session: input loop, printing, and reconnection.

    Every connection gets a new :class:`Client` (the old one is closed, its reader
    stopped) and a generation number; a ``closed`` notice of an older generation is ignored.  The rooms joined and the id
    of the last message seen in each are kept across connections: after a reconnect the
    CLI joins the same rooms again and asks each for ``history`` after that id, printing
    what it missed (duplicates, by id, are dropped).
    """

    def __init__(self, out: _Output, inbox: "queue.Queue[Tuple[str, str]]",
                 target: Tuple[Optional[str], Optional[str], Optional[int]], pin: Optional[str],
                 nick: str, password: Optional[str], timeout: float, attempts: int) -> None:
        self._out = out
        self._inbox = inbox
        self._target = target
        self._pin = pin
        self._nick = nick
        self._password = password
        self._timeout = timeout
        self._attempts = attempts
        self._client: Optional[Client] = None
        self._generation = 0
        self.secret: Optional[str] = None
        """The secret of the registered nick, sent with every hello."""
        self._lock = threading.Lock()  # guards the fields below (the reader thread writes them)
        self._last_seen: Dict[str, str] = {}
        self._seen: "collections.OrderedDict[str, None]" = collections.OrderedDict()
        self.rooms: List[str] = []
        """The rooms joined, in the order joined (joined again after a reconnect)."""
        self.room: Optional[str] = None
        """The current room: plain lines are said there."""

    # -- connections ---------------------------------------------------------

    def connect(self) -> Client:
        """Open a new connection (no hello yet); raises what :meth:`Client.connect` raises."""
        self._generation += 1
        generation = str(self._generation)
        client = Client(timeout=self._timeout,
                        on_event=lambda frame: self._event(frame),
                        on_close=lambda reason: self._inbox.put(("closed", generation)))
        unix_path, host, port = self._target
        if unix_path is not None:
            client.connect_unix(unix_path)
        else:
            assert host is not None and port is not None
            client.connect(host, port, tls_fingerprint=self._pin)
        old, self._client = self._client, client
        if old is not None:
            old.close()
        return client

    def close(self) -> None:
        """Close the current connection, if any."""
        if self._client is not None:
            self._client.close()

    def register(self, room: Optional[str]) -> None:
        """First connection: hello, then join ``room`` if given; raises LanchatError."""
        client = self._current()
        self._out.reply(client.hello(self._nick, self._password, secret=self.secret))
        self.rooms = list((client.welcome or {}).get("rooms") or [])
        self.room = self.rooms[0] if self.rooms else None
        if room:
            self._out.reply(client.join(room))
            self._joined(room)

    def _current(self) -> Client:
        assert self._client is not None
        return self._client

    def _rejoin(self) -> None:
        """After a reconnect: hello, the same rooms as before, and the messages missed."""
        client = self._current()
        welcome = client.hello(self._nick, self._password, secret=self.secret)
        if self._out.as_json:
            self._out.reply(welcome)
        else:
            self._out.lines([f"* reconnected to {welcome.get('name')} as {welcome.get('nick')}"])
        wanted, current = list(self.rooms), self.room
        placed = list(welcome.get("rooms") or [])
        for room in wanted:
            if room not in placed:
                self._out.reply(client.join(room))
        for room in placed:  # the server's default room, left before the reconnect
            if room not in wanted:
                client.leave(room)
        self.rooms, self.room = wanted, current
        for room in wanted:
            self._catch_up(client, room)

    def _catch_up(self, client: Client, room: str) -> None:
        """Print the messages of ``room`` after the last one seen (PROTOCOL.md, history)."""
        with self._lock:
            after = self._last_seen.get(room)
        if after is None:
            return
        first = True
        while True:
            messages = client.history(room, after=after, limit=HISTORY_PAGE)["messages"]
            if first and messages:
                before = client.history(room, before=messages[0]["id"], limit=1)["messages"]
                if not before or before[-1].get("id") != after:
                    print(f"lanchat: [{room}] some messages may be missing: the server no"
                          " longer holds the last one seen", file=sys.stderr)
            first = False
            for message in messages:
                self._message(message)
            if len(messages) < HISTORY_PAGE:
                return
            after = messages[-1]["id"]

    def _reconnect(self, reason: Optional[LanchatError]) -> int:
        """The connection ended: reconnect with back-off, or give up.

        Returns -1 once reconnected, else the exit status (after saying why on stderr).
        """
        what = _describe(reason)
        if reason is not None and reason.code in NO_RECONNECT:
            print(f"lanchat: disconnected: {what}", file=sys.stderr)
            return 1
        if self._attempts <= 0:
            print(f"lanchat: disconnected: {what}; not reconnecting (--reconnect 0)",
                  file=sys.stderr)
            return 1
        error: str = what
        for attempt in range(self._attempts):
            delay = backoff(attempt)
            print(f"lanchat: disconnected: {error}; reconnecting in {delay:g} s"
                  f" (attempt {attempt + 1} of {self._attempts})", file=sys.stderr)
            status = self._wait(delay)
            if status is not None:
                return status
            try:
                self.connect()
                self._rejoin()
                return -1
            except FingerprintMismatch as exc:
                print(f"lanchat: the server now presents a certificate with SHA-256"
                      f" {exc.presented}, not the pinned {exc.expected}: not reconnecting",
                      file=sys.stderr)
                return 2
            except LanchatError as exc:
                if exc.code in ("auth_failed", "tls_required", "protocol_unsupported"):
                    print(f"lanchat: reconnecting failed: {exc}", file=sys.stderr)
                    return 1
                error = str(exc)
            except OSError as exc:
                error = f"cannot connect: {exc}"
        print(f"lanchat: gave up reconnecting after {self._attempts} attempts: {error}",
              file=sys.stderr)
        return 1

    def _wait(self, delay: float) -> Optional[int]:
        """Wait ``delay`` seconds before a reconnection, still reading input.

        Returns None to go on, or the exit status when the input ends or says /quit.
        """
        deadline = time.monotonic() + delay
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                kind, line = self._inbox.get(timeout=remaining)
            except queue.Empty:
                return None
            if kind == "eof":
                print("lanchat: input ended while disconnected", file=sys.stderr)
                return 1
            if kind == "error":
                print(f"lanchat: {line}", file=sys.stderr)
            elif kind == "line" and line.strip():
                if line.split(" ", 1)[0] == "/quit":
                    return 0
                print("lanchat: not connected (reconnecting): line not sent", file=sys.stderr)

    # -- events --------------------------------------------------------------

    def _event(self, frame: Frame) -> None:
        """An event from the reader thread: print it (a message only once)."""
        if frame.get("type") == "message":
            self._message(frame)
        else:
            self._out.event(frame)

    def _message(self, message: Frame) -> None:
        """Print a message unless its id was seen; remember it as the room's last."""
        message_id, room = message.get("id"), message.get("room")
        if isinstance(message_id, str) and isinstance(room, str):
            if not self._saw(room, message_id):
                return
        self._out.event(message)

    def _saw(self, room: str, message_id: str) -> bool:
        """Record a message id; False when it was already seen."""
        with self._lock:
            if message_id in self._seen:
                return False
            self._seen[message_id] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
            last = self._last_seen.get(room)
            # UUIDv7 ids of one server sort by time: keep the newest as the catch-up point.
            if last is None or message_id > last:
                self._last_seen[room] = message_id
            return True

    def _joined(self, room: str) -> None:
        if room not in self.rooms:
            self.rooms.append(room)
        self.room = room

    # -- input ---------------------------------------------------------------

    def run(self) -> int:
        """The input loop: one line at a time, each request answered before the next."""
        while True:
            kind, line = self._inbox.get()
            if kind == "closed":
                if line != str(self._generation):
                    continue  # an older connection's end, already handled
                status = self._reconnect(self._current().close_reason)
                if status >= 0:
                    return status
                continue
            if kind == "error":
                print(f"lanchat: {line}", file=sys.stderr)
                continue
            if kind == "eof":
                line = "/quit"
            if not line.strip():
                continue
            try:
                type_, fields = parse_command(line, self.room)
            except ValueError as exc:
                print(f"lanchat: {exc}", file=sys.stderr)
                continue
            if type_ == "help":
                print(HELP, file=sys.stderr)
                continue
            client = self._current()
            try:
                if type_ == "quit":
                    self._out.reply(client.quit(**fields))
                    return 0
                reply = client.request(type_, **fields)
                self._out.reply(reply)
            except ConnectionClosed:
                status = self._reconnect(client.close_reason)
                if status >= 0:
                    return status
                continue
            except LanchatError as exc:
                if exc.frame is not None and self._out.as_json:
                    self._out.reply(exc.frame)
                else:
                    print(f"lanchat: {type_} failed: {exc}", file=sys.stderr)
                continue
            if type_ == "join":
                self._joined(fields["room"])
            elif type_ == "leave":
                if fields["room"] in self.rooms:
                    self.rooms.remove(fields["room"])
                if fields["room"] == self.room:
                    self.room = None
            elif type_ == "say" and isinstance(reply.get("id"), str):
                self._saw(fields["room"], reply["id"])
