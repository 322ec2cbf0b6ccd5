"""A thread-safe lanchat client over TCP (plain or TLS) or a Unix socket.

One background thread owns the reading side of the socket.  It routes each
reply to the request waiting for it (matched by ``re``), answers the server's
keepalive ``ping`` with ``pong``, and hands events to a callback or to a
bounded buffer read through :meth:`Client.next_event` / :meth:`Client.events`.
Any thread may send; sends are serialised by a lock.

Typical use::

    with Client().connect("127.0.0.1", 7878) as chat:
        chat.hello("ann")
        chat.say("lobby", "hello")
        for event in chat.events():
            print(event)

Over TLS, the server's certificate is pinned by its fingerprint (``tls_sha256``,
printed by the server at start and carried by its beacons)::

    Client().connect("127.0.0.1", 7878, tls_fingerprint="3f1c0e0b...")
"""

import collections
import hmac
import itertools
import logging
import secrets
import socket
import ssl
import threading
import time
from typing import (
    Any, BinaryIO, Callable, Deque, Dict, Iterator, List, Optional, Tuple, Union,
)

from .errors import ConnectionClosed, FingerprintMismatch, LanchatError, LanchatTimeout
from .protocol import (
    DEFAULT_MAX_LINE,
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    Frame,
    _Null,
    ProtocolError,
    RequestId,
    decode_line,
    encode_frame,
    frame_kind,
    request_frame,
)
from .tls import (
    SERVER_NAME,
    TRUST_ON_FIRST_USE,
    TlsChannel,
    client_context,
    fingerprint_of,
    parse_fingerprint,
)

__all__ = ["Client", "parse_address", "CLIENT_NAME", "TRUST_ON_FIRST_USE"]

log = logging.getLogger("lanchat")

CLIENT_NAME = "lanchat-py/0.1.0"
"""Sent as ``client`` in hello unless told otherwise."""

INCOMING_LINE_LIMIT = 16 * 1024 * 1024
"""Longest line accepted from the server, in bytes (PROTOCOL.md recommends 16 MiB).

The announced ``max_line`` bounds what a *client* may send.  Server lines can
be much longer (a ``history`` reply of 200 long messages, the member list of a
large room), so the reader allows far more while staying bounded.
"""

EventCallback = Callable[[Frame], None]
CloseCallback = Callable[[ConnectionClosed], None]


def new_secret() -> str:
    """A random account secret (24 URL-safe characters, 144 bits) for :meth:`Client.register`."""
    return secrets.token_urlsafe(18)


def parse_address(address: str, default_port: int = DEFAULT_PORT) -> Tuple[str, int]:
    """Split ``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT`` into ``(host, port)``.

    Raises ``ValueError`` with a one-line explanation when the address is malformed.
    """
    host, port_text = address, None
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"missing ']' in address {address!r}")
        host, rest = address[1:end], address[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected text after ']' in address {address!r}")
        port_text = rest[1:] if rest else None
    elif address.count(":") == 1:  # more than one: a bare IPv6 address
        host, port_text = address.split(":")
    if not host:
        raise ValueError(f"missing host in address {address!r}")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port {port_text!r} in address {address!r}")
    return host, int(port_text)


class _Pending:
    """A request waiting for its reply."""

    __slots__ = ("id", "done", "reply", "error")

    def __init__(self, request_id: RequestId) -> None:
        self.id = request_id
        self.done = threading.Event()
        self.reply: Optional[Frame] = None
        self.error: Optional[LanchatError] = None

    def resolve(self, reply: Frame) -> None:
        self.reply = reply
        self.done.set()

    def fail(self, error: LanchatError) -> None:
        self.error = error
        self.done.set()


class _EventBuffer:
    """Events waiting to be read: bounded, dropping the oldest when full."""

    def __init__(self, capacity: int) -> None:
        self._items: Deque[Frame] = collections.deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, event: Frame) -> None:
        with self._cond:
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: Optional[float]) -> Optional[Frame]:
        """The next event; None once closed and drained; LanchatTimeout when none came in time."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise LanchatTimeout(f"no event within {timeout} s")
            return self._items.popleft() if self._items else None


class Client:
    """A lanchat session.

    Create it, :meth:`connect` (or :meth:`connect_unix`), then :meth:`hello`.
    Each command sends a request with a fresh integer ``id``, waits for the
    reply with the same ``re`` and returns it as a dict (for example
    ``{"type": "ok", "cmd": "say", "re": 3, "id": "...", "ts": 1700000000000}``);
    an ``error`` reply raises :class:`LanchatError` carrying the protocol code.

    Events (``message``, ``join``, ``direct``, ...) go to ``on_event`` when given,
    called on the reader thread (it must not wait for replies; :meth:`send` is
    fine), otherwise to a buffer of at most ``max_events`` (the oldest are dropped,
    counted in :attr:`dropped_events`).  ``on_close`` is called once, with the
    :class:`ConnectionClosed` that explains why, when the connection ends.
    Lines from the server longer than ``max_incoming_line`` bytes are discarded.
    """

    def __init__(self, *, timeout: float = 10.0, on_event: Optional[EventCallback] = None,
                 on_close: Optional[CloseCallback] = None, max_events: int = 10000,
                 max_incoming_line: int = INCOMING_LINE_LIMIT) -> None:
        self.timeout = timeout
        """Default seconds to wait for a reply or to connect."""
        self._max_incoming_line = max_incoming_line
        self._on_event = on_event
        self._on_close = on_close
        self._events = _EventBuffer(max_events)
        self._sock: Optional[socket.socket] = None
        self._tls: Optional[TlsChannel] = None
        self._reader: Optional[threading.Thread] = None
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: Dict[RequestId, _Pending] = {}
        self._quit: Optional[_Pending] = None
        self._closed: Optional[ConnectionClosed] = None
        self._closed_event = threading.Event()
        self._max_line = DEFAULT_MAX_LINE
        self.welcome: Optional[Frame] = None
        """The server's welcome frame, once :meth:`hello` succeeded."""
        self.nickname: Optional[str] = None
        """The session's current nick, kept up to date by :meth:`hello` and :meth:`nick`."""
        self.bye: Optional[Frame] = None
        """The server's bye frame, if it sent one."""
        self.tls_sha256: Optional[str] = None
        """Over TLS, the fingerprint of the certificate the server presented (lowercase hex)."""
        self.tls_pinned = False
        """True when the connection is TLS and the certificate matched the pin."""

    # -- connection ---------------------------------------------------------

    def connect(self, host: str, port: int = DEFAULT_PORT, timeout: Optional[float] = None, *,
                tls_fingerprint: Optional[str] = None,
                tls: Union[None, bool, str] = None) -> "Client":
        """Open a TCP connection; returns ``self`` so it can be chained or used in ``with``.

        With ``tls_fingerprint`` (64 hex digits, either case: the server's
        ``tls_sha256``) the connection is TLS, and the certificate the server
        presents must hash to it: otherwise :class:`FingerprintMismatch` is raised
        and the socket closed before a single line was sent.  Without it the
        connection is plain, as it always was.  ``tls``: None (the default) means TLS
        exactly when a fingerprint is given; True insists on TLS (so a fingerprint
        is required); False insists on plain TCP; :data:`TRUST_ON_FIRST_USE` is TLS
        accepting any certificate, whose fingerprint :attr:`tls_sha256` then holds
        for the caller to check and record (pin it next time); :meth:`hello` refuses
        to send a password on such a connection.  Anything inconsistent raises
        ``ValueError`` before connecting; a failed handshake raises ``ssl.SSLError``
        (an ``OSError``).  The handshake counts against ``timeout``.
        """
        pin = None if tls_fingerprint is None else parse_fingerprint(tls_fingerprint)
        use_tls = _tls_wanted(tls, pin)
        if self._sock is not None:
            raise RuntimeError("client is already connected")
        sock = socket.create_connection((host, port), self._timeout(timeout))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not use_tls:
            return self.attach(sock)
        try:
            tls_sock = client_context().wrap_socket(sock, server_hostname=SERVER_NAME)
        except BaseException:
            sock.close()
            raise
        try:
            cert = tls_sock.getpeercert(binary_form=True)
            if not cert:
                raise ssl.SSLError("the server presented no certificate")
            presented = fingerprint_of(cert)
            if pin is not None and not hmac.compare_digest(bytes.fromhex(presented),
                                                           bytes.fromhex(pin)):
                raise FingerprintMismatch(pin, presented)
        except BaseException:
            tls_sock.close()
            raise
        self.tls_sha256, self.tls_pinned = presented, pin is not None
        return self.attach(tls_sock)

    def connect_unix(self, path: str, timeout: Optional[float] = None) -> "Client":
        """Open a connection to a server's Unix domain socket at ``path``."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._timeout(timeout))
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return self.attach(sock)

    def attach(self, sock: socket.socket) -> "Client":
        """Use an already connected stream socket (the client takes ownership of it).

        An ``ssl.SSLSocket`` must have done its handshake, and checking its certificate
        is the caller's business (:meth:`connect` pins it); such a connection counts as
        unpinned (:meth:`hello` sends no password on it) unless the caller, having
        checked the certificate, sets :attr:`tls_pinned` (and :attr:`tls_sha256`).
        """
        if self._sock is not None:
            raise RuntimeError("client is already connected")
        if isinstance(sock, ssl.SSLSocket):
            self._tls = TlsChannel(sock)
        else:
            sock.settimeout(None)  # the reader blocks; waits are bounded by events instead
        self._sock = sock
        self._reader = threading.Thread(target=self._read_loop, name="lanchat-reader", daemon=True)
        self._reader.start()
        return self

    def close(self) -> None:
        """Close the connection without saying goodbye (see :meth:`quit`).  Idempotent."""
        self._finish(ConnectionClosed("closed", "closed by the client"))
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(self.timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the connection is over."""
        return self._closed_event.is_set()

    @property
    def close_reason(self) -> Optional[ConnectionClosed]:
        """Why the connection ended (``code`` is the bye reason), or None while open."""
        return self._closed

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Wait until the connection is over; False if still open after ``timeout``."""
        return self._closed_event.wait(timeout)

    @property
    def max_line(self) -> int:
        """Longest line this client may send: the server's ``max_line`` after welcome."""
        return self._max_line

    @property
    def dropped_events(self) -> int:
        """Events dropped because the buffer was full."""
        return self._events.dropped

    # -- requests -----------------------------------------------------------

    def request(self, type_: str, timeout: Optional[float] = None, **fields: Any) -> Frame:
        """Send a request and return its reply; fields that are None are left out.

        Raises :class:`LanchatError` for an error reply, :class:`LanchatTimeout`
        when no reply comes within ``timeout`` seconds (default :attr:`timeout`),
        and :class:`ConnectionClosed` when the connection ends first.
        """
        if threading.current_thread() is self._reader:
            raise RuntimeError("cannot wait for a reply on the reader thread (in on_event); "
                               "use send() or hand the work to another thread")
        with self._send_lock:
            request_id = next(self._ids)
            pending = _Pending(request_id)
            with self._state_lock:
                if self._closed is not None:
                    raise self._closed_error()
                self._pending[request_id] = pending
                if type_ == "quit":
                    self._quit = pending
            try:
                self._write(request_frame(type_, id=request_id, **fields))
            except BaseException:
                with self._state_lock:
                    self._pending.pop(request_id, None)
                raise
        if not pending.done.wait(self._timeout(timeout)):
            with self._state_lock:
                self._pending.pop(request_id, None)
            raise LanchatTimeout(f"no reply to {type_} (id {request_id}) "
                                 f"within {self._timeout(timeout)} s")
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        if pending.reply.get("type") == "error":
            raise LanchatError.from_frame(pending.reply)
        return pending.reply

    def send(self, type_: str, **fields: Any) -> None:
        """Send a frame without an id and without waiting for its reply.

        Meant for ``pong`` (never answered) and for fire-and-forget requests, from
        ``on_event`` for instance: their replies carry no ``re`` and arrive as
        events (an ``ok`` or an ``error`` frame).
        """
        with self._send_lock:
            if self._closed is not None:
                raise self._closed_error()
            self._write(request_frame(type_, **fields))

    def _write(self, frame: Frame) -> None:
        """Encode and send one frame; the caller holds the send lock."""
        line = encode_frame(frame)
        if len(line) - 1 > self._max_line:
            raise LanchatError("line_too_long", f"{frame['type']} request is {len(line) - 1} bytes,"
                               f" over the server's max_line of {self._max_line}")
        if self._sock is None:
            raise LanchatError("closed", "not connected")
        try:
            if self._tls is not None:
                self._tls.sendall(line)
            else:
                self._sock.sendall(line)
        except OSError as exc:
            self._finish(ConnectionClosed("connection_lost", f"send failed: {exc}"))
            raise self._closed_error() from exc

    def _timeout(self, timeout: Optional[float]) -> float:
        return self.timeout if timeout is None else timeout

    def _closed_error(self) -> ConnectionClosed:
        """A fresh exception for the end of the connection (one per raise, safe across threads)."""
        reason = self._closed
        if reason is None:
            return ConnectionClosed("connection_lost", "the connection failed")
        return ConnectionClosed(reason.code, reason.message, reason.frame)

    # -- commands -----------------------------------------------------------

    def hello(self, nick: str, password: Optional[str] = None, *,
              protocol: Optional[int] = PROTOCOL_VERSION, client: Optional[str] = CLIENT_NAME,
              secret: Optional[str] = None, autojoin: Optional[bool] = None,
              timeout: Optional[float] = None) -> Frame:
        """Register as ``nick``; returns the welcome frame.

        After it the session is in the server's default room (``welcome["rooms"]``), unless
        ``autojoin`` is ``False`` (extension): then it is in no room and nobody is told.
        On ``nick_taken``, ``nick_invalid`` or ``nick_registered`` the connection stays
        open: try again.  ``secret`` is the secret of ``nick`` when it is registered (see
        :meth:`register`); with the right one, a session still holding the nick is told
        ``bye replaced`` and this one takes it over.
        A ``password`` or ``secret`` is refused (``LanchatError`` ``tls_unpinned``, nothing
        sent) on a TLS connection whose certificate was not pinned (:data:`TRUST_ON_FIRST_USE`).
        """
        self._check_may_send_secrets(password, secret)
        welcome = self.request("hello", timeout, nick=nick, protocol=protocol,
                               client=client, password=password, secret=secret,
                               autojoin=autojoin)
        limits = welcome.get("limits") or {}
        if isinstance(limits.get("max_line"), int) and limits["max_line"] > 0:
            self._max_line = limits["max_line"]
        self.welcome = welcome
        self.nickname = welcome.get("nick", nick)
        return welcome

    def join(self, room: str, key: Optional[str] = None,
             timeout: Optional[float] = None) -> Frame:
        """Join ``room`` (created if new); the reply has ``room``, ``topic`` and ``members``.

        ``key`` is the key of a key-protected room.  The member who makes a room is its
        first operator (``"op": True`` in ``members``).  A private room that will not have
        you raises :class:`LanchatError` with code ``not_invited`` or ``bad_key``.
        """
        return self.request("join", timeout, room=room, key=key)

    # -- private rooms (extension) ---------------------------------------------

    def mode(self, room: str, invite_only: Optional[bool] = None,
             key: Optional[Union[str, _Null]] = None, topic_lock: Optional[bool] = None,
             timeout: Optional[float] = None) -> Frame:
        """Read (no changes given) or change (operators) the modes of ``room``.

        ``None`` leaves a mode as it is; ``key=NULL`` removes the key.  The reply has
        ``invite_only``, ``has_key`` and ``topic_lock``: the key itself is never sent back.
        """
        return self.request("mode", timeout, room=room, invite_only=invite_only, key=key,
                            topic_lock=topic_lock)

    def invite(self, room: str, nick: str, timeout: Optional[float] = None) -> Frame:
        """Let ``nick`` (connected now) join ``room`` once; they get an ``invite`` event."""
        return self.request("invite", timeout, room=room, nick=nick)

    def kick(self, room: str, nick: str, reason: Optional[str] = None,
             timeout: Optional[float] = None) -> Frame:
        """Remove ``nick`` from ``room`` (operators); the room gets ``leave`` with ``kicked_by``."""
        return self.request("kick", timeout, room=room, nick=nick, reason=reason)

    def op(self, room: str, nick: str, timeout: Optional[float] = None) -> Frame:
        """Make the member ``nick`` an operator of ``room`` (operators)."""
        return self.request("op", timeout, room=room, nick=nick)

    def leave(self, room: str, timeout: Optional[float] = None) -> Frame:
        """Leave ``room``."""
        return self.request("leave", timeout, room=room)

    def say(self, room: str, text: str, timeout: Optional[float] = None) -> Frame:
        """Send ``text`` to ``room``; the reply has the message ``id`` and ``ts``.

        Other members get a ``message`` event; the sender gets no echo.
        """
        return self.request("say", timeout, room=room, text=text)

    def dm(self, to: str, text: str, timeout: Optional[float] = None) -> Frame:
        """Send a direct message to the nick ``to``; it gets a ``direct`` event.

        The reply has ``away`` (True) and maybe ``away_text`` when the recipient is away or
        busy (a server extension; see :func:`lanchat.protocol.recipient_away`).
        """
        return self.request("dm", timeout, to=to, text=text)

    def _check_may_send_secrets(self, *values: Optional[str]) -> None:
        """Refuse to send a password or secret over TLS to a server not pinned."""
        if any(v is not None for v in values) and self._tls is not None and not self.tls_pinned:
            raise LanchatError("tls_unpinned", "no password or secret is sent to a server whose"
                                               " certificate is not pinned: check tls_sha256,"
                                               " then reconnect with tls_fingerprint")

    def nick(self, nick: str, secret: Optional[str] = None,
             timeout: Optional[float] = None) -> Frame:
        """Change nick; everyone sharing a room gets a ``nick`` event.

        A registered nick needs its ``secret`` (``nick_registered`` otherwise).
        """
        self._check_may_send_secrets(secret)
        reply = self.request("nick", timeout, nick=nick, secret=secret)
        self.nickname = reply.get("nick", nick)
        return reply

    def status(self, status: str, text: Optional[str] = None,
               timeout: Optional[float] = None) -> Frame:
        """Set ``status`` to ``"online"``, ``"away"`` or ``"busy"``, with an optional text."""
        return self.request("status", timeout, status=status, text=text)

    def topic(self, room: str, topic: Optional[str] = None,
              timeout: Optional[float] = None) -> Frame:
        """Read the topic of ``room`` (``topic`` None), set it, or clear it (``""``)."""
        return self.request("topic", timeout, room=room, topic=topic)

    def who(self, room: str, timeout: Optional[float] = None) -> Frame:
        """List the members of ``room``: ``reply["members"]`` is ``[{nick, status, text?}]``."""
        return self.request("who", timeout, room=room)

    def rooms(self, after: Optional[str] = None, limit: Optional[int] = None,
              timeout: Optional[float] = None) -> Frame:
        """List a page of rooms: ``reply["rooms"]`` is ``[{name, members, topic}]``, sorted.

        A server lists at most ``limits["rooms_page"]`` rooms per reply (500); when more
        follow, ``reply["next"]`` names the last one listed: pass it as ``after`` to get the
        next page.  ``limit`` is 1..500 (default: a whole page).  See :meth:`all_rooms`.
        """
        return self.request("rooms", timeout, after=after, limit=limit)

    def all_rooms(self, max_pages: int = 100, timeout: Optional[float] = None) -> List[Frame]:
        """Every room, page after page (at most ``max_pages`` of them)."""
        rooms: List[Frame] = []
        after: Optional[str] = None
        for _ in range(max_pages):
            reply = self.rooms(after=after, timeout=timeout)
            rooms.extend(reply["rooms"])
            after = reply.get("next")
            if after is None:
                break
        return rooms

    def history(self, room: str, before: Optional[str] = None, after: Optional[str] = None,
                limit: Optional[int] = None, timeout: Optional[float] = None) -> Frame:
        """Fetch past messages of ``room``, oldest first, in ``reply["messages"]``.

        ``before``/``after`` are message ids (exclusive); ``limit`` is 1..200 (default 50).
        """
        return self.request("history", timeout, room=room, before=before, after=after,
                            limit=limit)

    def register(self, secret: str, timeout: Optional[float] = None) -> Frame:
        """Register the current nick with ``secret`` (8..256 bytes, no control characters).

        From then on the nick can only be used with the secret (:meth:`hello`, :meth:`nick`),
        even while nobody holds it.  Registering again replaces the secret.  The reply has
        ``nick`` and ``persistent`` (False when the server keeps accounts in memory only).
        Keep the secret somewhere private; :func:`new_secret` makes a good one.
        """
        self._check_may_send_secrets(secret)
        return self.request("register", timeout, secret=secret)

    def unregister(self, timeout: Optional[float] = None) -> Frame:
        """Release the current nick's registration; the reply has ``nick``."""
        return self.request("unregister", timeout)

    def ping(self, timeout: Optional[float] = None) -> Frame:
        """Round-trip to the server."""
        return self.request("ping", timeout)

    def pong(self) -> None:
        """Answer the server's keepalive (the client does this by itself)."""
        self.send("pong")

    def quit(self, reason: Optional[str] = None, timeout: Optional[float] = None) -> Frame:
        """Say goodbye and close; returns the server's ``bye`` frame."""
        try:
            return self.request("quit", timeout, reason=reason)
        finally:
            self.close()

    # -- events -------------------------------------------------------------

    def next_event(self, timeout: Optional[float] = None) -> Frame:
        """Return the next event, waiting at most ``timeout`` seconds (None: forever).

        Raises :class:`LanchatTimeout` when none arrives in time, and
        :class:`ConnectionClosed` once the connection is over and every event
        received before the end has been returned.
        """
        event = self._events.get(timeout)
        if event is None:
            raise self._closed_error()
        return event

    def events(self, timeout: Optional[float] = None) -> Iterator[Frame]:
        """Iterate over events until the connection ends.

        With ``timeout``, iteration also stops after ``timeout`` seconds without
        an event.  Afterwards :attr:`close_reason` says why the connection ended.
        """
        while True:
            try:
                yield self.next_event(timeout)
            except (LanchatTimeout, ConnectionClosed):
                return

    def wait_for(self, predicate: Callable[[Frame], bool], timeout: Optional[float] = None) -> Frame:
        """Return the first event for which ``predicate`` is true, discarding the others.

        ``timeout`` bounds the whole wait (default :attr:`timeout`).
        """
        deadline = time.monotonic() + self._timeout(timeout)
        while True:
            event = self.next_event(max(0.0, deadline - time.monotonic()))
            if predicate(event):
                return event

    # -- reader thread ------------------------------------------------------

    def _read_loop(self) -> None:
        assert self._sock is not None
        reason = ConnectionClosed("connection_lost", "the server closed the connection")
        try:
            limit = self._max_incoming_line
            stream: BinaryIO
            if self._tls is not None:
                stream = self._tls.reader()  # type: ignore[assignment]
            else:
                stream = self._sock.makefile("rb")
            with stream:
                while self._closed is None:
                    line = stream.readline(limit + 1)  # +1: room for the LF
                    if not line.endswith(b"\n"):
                        if len(line) <= limit:
                            break  # end of stream (a partial last line is dropped)
                        log.warning("line from the server over %d bytes, discarded", limit)
                        while line and not line.endswith(b"\n"):
                            line = stream.readline(limit + 1)
                        continue
                    if line.strip(b"\r\n") and self._dispatch(line) == "bye":
                        return  # _dispatch has finished the connection
        except (OSError, ValueError) as exc:  # ValueError: stream closed under us
            reason = ConnectionClosed("connection_lost", str(exc))
        self._finish(reason)

    def _dispatch(self, line: bytes) -> str:
        """Route one line from the server; returns what it was (``"bye"`` ends the reading)."""
        try:
            frame = decode_line(line)
        except ProtocolError as exc:
            log.warning("ignoring a line from the server: %s", exc)
            return "ignore"
        kind = frame_kind(frame)
        if kind in ("ok", "error", "welcome") and self._resolve(frame):
            return kind
        if kind == "ignore":
            log.debug("ignoring a frame of unknown type: %s", frame.get("type"))
        elif kind == "bye":
            self._bye(frame)
        elif kind == "ping":
            try:
                self.send("pong")
            except LanchatError as exc:
                log.debug("could not answer ping: %s", exc)
        else:
            self._deliver(frame)
        return kind

    def _bye(self, frame: Frame) -> None:
        """The server said goodbye: end the connection, then answer a pending quit."""
        self.bye = frame
        with self._state_lock:
            quit_request, self._quit = self._quit, None
            if quit_request is not None:
                self._pending.pop(quit_request.id, None)
        # Finish first, so that close_reason is the bye's by the time quit() returns.
        self._finish(ConnectionClosed(str(frame.get("reason", "")), str(frame.get("message", "")),
                                      frame))
        if quit_request is not None:
            quit_request.resolve(frame)

    def _resolve(self, reply: Frame) -> bool:
        """Hand a reply to the request with its ``re``; False when it has no ``re``."""
        if "re" not in reply:
            # Not an answer to a request of ours (they all carry an id): the reply to
            # a frame sent with send(), or server_full on connect.  It becomes an event.
            return False
        with self._state_lock:
            pending = self._pending.pop(reply["re"], None)
            if pending is not None and pending is self._quit:
                self._quit = None
        if pending is None:
            log.debug("reply to a request nobody waits for any more: %s", reply)
        else:
            pending.resolve(reply)
        return True

    def _deliver(self, event: Frame) -> None:
        if self._on_event is None:
            self._events.put(event)
            return
        try:
            self._on_event(event)
        except Exception:  # a faulty callback must not kill the reader
            log.exception("on_event callback failed")

    def _finish(self, reason: ConnectionClosed) -> None:
        """End the connection once: fail waiting requests, wake readers, close the socket."""
        with self._state_lock:
            if self._closed is not None:
                return
            self._closed = reason
            pending, self._pending = list(self._pending.values()), {}
            self._quit = None
        for request in pending:
            request.fail(self._closed_error())
        if self._tls is not None:
            self._tls.close()
        elif self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already disconnected
            self._sock.close()
        self._events.close()
        self._closed_event.set()
        if self._on_close is not None:
            try:
                self._on_close(reason)
            except Exception:
                log.exception("on_close callback failed")


def _tls_wanted(tls: Union[None, bool, str], pin: Optional[str]) -> bool:
    """Whether :meth:`Client.connect` uses TLS; ``ValueError`` for an inconsistent request."""
    if tls is None:
        return pin is not None
    if tls is True:
        if pin is None:
            raise ValueError("TLS needs the server's fingerprint (tls_fingerprint=...), or"
                             f" tls={TRUST_ON_FIRST_USE!r} to accept any certificate and record"
                             " client.tls_sha256")
        return True
    if tls is False:
        if pin is not None:
            raise ValueError("tls=False contradicts tls_fingerprint")
        return False
    if tls == TRUST_ON_FIRST_USE:
        if pin is not None:
            raise ValueError(f"tls={TRUST_ON_FIRST_USE!r} contradicts tls_fingerprint:"
                             " give one or the other")
        return True
    raise ValueError(f"tls must be None, True, False or {TRUST_ON_FIRST_USE!r}, not {tls!r}")
