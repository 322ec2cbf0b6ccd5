"""The lanchat v1 wire format: constants, line encoding and decoding, and validation.

Everything here is pure (no sockets, no threads), so it can be tested against the
shared vectors in ``interop/vectors`` and reused by other tools.

A frame is a plain ``dict`` decoded from one line of JSON.  Requests go from the
client to the server; the server answers each one with exactly one reply
(``ok``, ``error``, ``welcome`` for ``hello``, ``bye`` for ``quit``) and also
sends events (``message``, ``join``, ...) that carry no ``re``.
"""

import json
import re as _re
import unicodedata
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple, Union

__all__ = [
    "PROTOCOL_VERSION",
    "DEFAULT_PORT",
    "DISCOVERY_PORT",
    "PRESENCE_PORT",
    "DEFAULT_MAX_LINE",
    "DEFAULT_MAX_TEXT",
    "MAX_DATAGRAM",
    "ERROR_CODES",
    "BYE_REASONS",
    "REQUEST_FIELDS",
    "NULL",
    "MAX_KEY_CHARS",
    "is_room_key",
    "EVENT_TYPES",
    "RequestId",
    "Frame",
    "ProtocolError",
    "request_frame",
    "encode_frame",
    "decode_line",
    "check_request",
    "check_server_frame",
    "is_message_id",
    "valid_secret",
    "frame_kind",
    "validate",
    "valid_name",
    "check_text",
]

PROTOCOL_VERSION = 1
"""The protocol version this package speaks."""
DEFAULT_PORT = 7878
"""Default TCP port of a lanchat server."""
DISCOVERY_PORT = 7879
"""Default UDP port for beacons and discovery queries."""
PRESENCE_PORT = DISCOVERY_PORT
"""The former name of :data:`DISCOVERY_PORT`, kept for existing code."""
DEFAULT_MAX_LINE = 16384
"""Default maximum line length in bytes, LF excluded (the server announces its own)."""
DEFAULT_MAX_TEXT = 4096
"""Default maximum ``say``/``dm`` text length in bytes."""
MAX_DATAGRAM = 1200
"""Largest discovery datagram, in bytes."""
MAX_ID_BYTES = 64
MAX_NAME_CHARS = 32
MAX_STATUS_TEXT_CHARS = 100
MAX_TOPIC_CHARS = 300
HISTORY_LIMIT_MAX = 200
ROOMS_PAGE_MAX = 500
"""Most rooms one ``rooms`` reply lists (extension); a longer listing is paged."""
MIN_SECRET_BYTES = 8
MAX_SECRET_BYTES = 256
"""An account secret (extension) is 8 to 256 bytes of UTF-8 without control characters."""

MAX_KEY_CHARS = 64
"""Longest room key (private rooms, extension), in characters."""


class _Null:
    """The type of :data:`NULL`: one instance, shown as ``NULL``."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()
"""A field value sent as JSON ``null`` (``None`` means "leave the field out").

Only ``mode`` gives ``null`` a meaning of its own: ``key=NULL`` removes a room's key."""

ERROR_CODES: FrozenSet[str] = frozenset(
    {
        "bad_json", "bad_frame", "unknown_type", "line_too_long", "not_registered",
        "already_registered", "protocol_unsupported", "auth_failed", "nick_invalid",
        "nick_taken", "room_invalid", "not_in_room", "no_such_nick", "text_invalid",
        "text_too_long", "rate_limited", "server_full", "too_many_errors", "too_many_rooms",
        "tls_required", "nick_registered", "too_many_accounts", "not_invited", "bad_key",
        "not_operator", "unavailable",
    }
)
"""Error codes defined by protocol v1.  Servers may add more: treat unknown ones as generic."""

BYE_REASONS: FrozenSet[str] = frozenset(
    {
        "quit", "hello_timeout", "ping_timeout", "too_many_errors", "flood",
        "shutting_down", "server_full", "auth_failed", "protocol_unsupported", "tls_required",
        "replaced",
    }
)

RequestId = Union[int, str]
Frame = Dict[str, Any]

# type -> (required fields, optional fields), each field with the Python types it accepts.
_Types = Tuple[type, ...]
_STR: _Types = (str,)
_INT: _Types = (int,)
_BOOL: _Types = (bool,)
REQUEST_FIELDS: Mapping[str, Tuple[Mapping[str, _Types], Mapping[str, _Types]]] = {
    "hello": ({"nick": _STR},
              {"protocol": _INT, "client": _STR, "password": _STR, "secret": _STR,
               "autojoin": _BOOL}),
    "join": ({"room": _STR}, {}),
    "join": ({"room": _STR}, {"key": _STR}),
    "leave": ({"room": _STR}, {}),
    "say": ({"room": _STR, "text": _STR}, {}),
    "dm": ({"to": _STR, "text": _STR}, {}),
    "nick": ({"nick": _STR}, {"secret": _STR}),
    "status": ({"status": _STR}, {"text": _STR}),
    "topic": ({"room": _STR}, {"topic": _STR}),
    "who": ({"room": _STR}, {}),
    "rooms": ({}, {"after": _STR, "limit": _INT}),
    "history": ({"room": _STR}, {"before": _STR, "after": _STR, "limit": _INT}),
    "mode": ({"room": _STR}, {"invite_only": _BOOL, "key": _STR, "topic_lock": _BOOL}),
    "invite": ({"room": _STR, "nick": _STR}, {}),
    "kick": ({"room": _STR, "nick": _STR}, {"reason": _STR}),
    "op": ({"room": _STR, "nick": _STR}, {}),
    "ping": ({}, {}),
    "pong": ({}, {}),
    "quit": ({}, {"reason": _STR}),
    "register": ({"secret": _STR}, {}),
    "unregister": ({}, {}),
}
"""Request types and their fields, as in PROTOCOL.md."""

STATUSES: FrozenSet[str] = frozenset({"online", "away", "busy"})

_HEX = "[0-9A-Fa-f]"
_MESSAGE_ID = _re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")

# Required fields of each server frame, for check_server_frame.
_SERVER_FIELDS: Mapping[str, Mapping[str, _Types]] = {
    "welcome": {
        "protocol": _INT, "server": _STR, "name": _STR, "session": _STR,
        "nick": _STR, "rooms": (list,), "motd": _STR, "limits": (dict,),
    },
    "ok": {"cmd": _STR},
    "error": {"code": _STR, "message": _STR},
    "bye": {"reason": _STR, "message": _STR},
    "join": {"room": _STR, "nick": _STR},
    "leave": {"room": _STR, "nick": _STR},
    "message": {"id": _STR, "ts": _INT, "room": _STR, "from": _STR, "text": _STR},
    "direct": {"id": _STR, "ts": _INT, "from": _STR, "to": _STR, "text": _STR},
    "nick": {"old": _STR, "new": _STR},
    "presence": {"nick": _STR, "status": _STR},
    "topic": {"room": _STR, "topic": _STR, "by": _STR},
    "quit": {"nick": _STR, "reason": _STR},
    "mode": {"room": _STR, "by": _STR, "invite_only": _BOOL, "has_key": _BOOL,
             "topic_lock": _BOOL},
    "invite": {"room": _STR, "by": _STR},
    "ping": {},
}
_OK_FIELDS: Mapping[str, Mapping[str, _Types]] = {
    "join": {"room": _STR, "topic": _STR, "members": (list,)},
    "leave": {"room": _STR},
    "say": {"id": _STR, "ts": _INT},
    "dm": {"id": _STR, "ts": _INT},
    "nick": {"nick": _STR},
    "status": {"status": _STR},
    "topic": {"room": _STR, "topic": _STR},
    "who": {"room": _STR, "members": (list,)},
    "rooms": {"rooms": (list,)},
    "history": {"room": _STR, "messages": (list,)},
    "mode": {"room": _STR, "invite_only": _BOOL, "has_key": _BOOL, "topic_lock": _BOOL},
    "invite": {"room": _STR, "nick": _STR},
    "kick": {"room": _STR, "nick": _STR},
    "op": {"room": _STR, "nick": _STR},
    "ping": {},
    "register": {"nick": _STR, "persistent": (bool,)},
    "unregister": {"nick": _STR},
}

_OK_OPTIONAL: Mapping[str, Mapping[str, _Types]] = {
    "dm": {"away": (bool,), "away_text": _STR},
}
"""Optional fields of ``ok`` replies (extensions), checked when present."""

EVENT_TYPES: FrozenSet[str] = frozenset(
    t for t in _SERVER_FIELDS if t not in ("welcome", "ok", "error", "bye")
)
"""Server frames that are events (they never carry ``re``)."""


class ProtocolError(ValueError):
    """A line or frame that breaks the protocol.

    ``code`` is the protocol error code; ``re`` is the id of the offending request
    when it could be read (the server's error reply carries it), else None.
    """

    def __init__(self, code: str, message: str, re: Optional[RequestId] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.re = re


def request_frame(type_: str, id: Optional[RequestId] = None, **fields: Any) -> Frame:
    """Build a request object: ``type``, then ``id`` when given, then the fields that are not None.

    ``None`` means "absent", exactly as on the wire, so optional arguments can be
    passed straight through::

        >>> request_frame("history", id=3, room="lobby", before=None, limit=10)
        {'type': 'history', 'id': 3, 'room': 'lobby', 'limit': 10}

    A field given as :data:`NULL` is sent as ``null`` (``mode``'s ``key=NULL`` removes a key).
    """
    frame: Frame = {"type": type_}
    if id is not None:
        frame["id"] = id
    frame.update(
        (name, None if value is NULL else value)
        for name, value in fields.items()
        if value is not None
    )
    return frame


def encode_frame(frame: Mapping[str, Any]) -> bytes:
    """Encode a frame as one line of compact UTF-8 JSON, LF included.

    JSON escapes every control character inside strings, so the result never
    contains a raw LF before the final one.
    """
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_line(line: Union[bytes, str]) -> Frame:
    """Decode one line (with or without its LF / CRLF) into a frame.

    Raises :class:`ProtocolError` with code ``bad_json`` for invalid UTF-8, invalid
    JSON, or a JSON value that is not an object.  It does not check ``type``:
    see :func:`check_request` and :func:`check_server_frame`.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("bad_json", f"invalid UTF-8: {exc.reason}") from None
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ProtocolError("bad_json", f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_json", "a frame must be a JSON object")
    if _has_lone_surrogate(value):
        # Python accepts "\ud800" escapes; the result is not valid Unicode text.
        raise ProtocolError("bad_json", "invalid JSON: unpaired surrogate escape")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _is_type(value: Any, types: _Types) -> bool:
    # bool is a subclass of int in Python, but not an integer in JSON.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, str):
        return len(value.encode("utf-8")) <= MAX_ID_BYTES
    return False


def check_request(frame: Mapping[str, Any]) -> None:
    """Check a decoded request the way a server does before acting on it.

    Checks, in the protocol's order: ``id``, ``type``, known type, then each
    field's presence and JSON type (``null`` counts as absent, ``id`` included),
    plus the value rules the protocol makes frame errors: ``hello.protocol``
    non-negative, ``status`` one of three, ``history`` ``before``/``after``
    shaped like a message id (see :func:`is_message_id`), ``history.limit`` 1..200, ``rooms.after`` 1..32 characters and
    ``rooms.limit`` 1..500, and a ``secret`` (accounts) of the shape
    :func:`valid_secret` accepts.
    Raises :class:`ProtocolError` (``bad_frame`` or ``unknown_type``).
    Semantic checks (nick syntax, text length, ...) are left to :func:`valid_name`
    and :func:`check_text`.
    """
    if frame.get("id") is not None and not _valid_id(frame["id"]):
        raise ProtocolError("bad_frame", "id must be an integer or a string of at most 64 bytes")
    re = frame.get("id")
    type_ = frame.get("type")
    if not isinstance(type_, str):
        raise ProtocolError("bad_frame", "missing or invalid field: type", re)
    if type_ not in REQUEST_FIELDS:
        raise ProtocolError("unknown_type", f"unknown request type: {type_}", re)
    required, optional = REQUEST_FIELDS[type_]
    for name, types in required.items():
        if frame.get(name) is None or not _is_type(frame[name], types):
            raise ProtocolError("bad_frame", f"missing or invalid field: {name}", re)
    for name, types in optional.items():
        if frame.get(name) is not None and not _is_type(frame[name], types):
            raise ProtocolError("bad_frame", f"invalid field: {name}", re)
    if type_ == "hello" and frame.get("protocol") is not None:
        if not 0 <= frame["protocol"] < 2**64:
            raise ProtocolError("bad_frame", "protocol must be a non-negative integer", re)
    if type_ == "status" and frame["status"] not in STATUSES:
        raise ProtocolError("bad_frame", "status must be online, away or busy", re)
    for name in ("before", "after") if type_ == "history" else ():
        if frame.get(name) is not None and not is_message_id(frame[name]):
            raise ProtocolError("bad_frame", f"{name} must be a message id (a UUID)", re)
    if type_ == "history" and frame.get("limit") is not None:
        if not 1 <= frame["limit"] <= HISTORY_LIMIT_MAX:
            raise ProtocolError("bad_frame", f"limit must be 1..{HISTORY_LIMIT_MAX}", re)
    if type_ == "rooms" and frame.get("limit") is not None:
        if not 1 <= frame["limit"] <= ROOMS_PAGE_MAX:
            raise ProtocolError("bad_frame", f"limit must be 1..{ROOMS_PAGE_MAX}", re)
    if type_ in ("join", "mode") and frame.get("key") is not None:
        if not is_room_key(frame["key"]):
            raise ProtocolError(
                "bad_frame", f"key must be 1..{MAX_KEY_CHARS} characters, no control characters", re
            )
    if type_ == "rooms" and frame.get("after") is not None:
        if not 1 <= len(frame["after"]) <= MAX_NAME_CHARS:
            raise ProtocolError("bad_frame", f"after must be a room name (1..{MAX_NAME_CHARS})", re)
    if type_ in ("hello", "nick", "register") and frame.get("secret") is not None:
        if not valid_secret(frame["secret"]):
            raise ProtocolError("bad_frame", f"secret must be {MIN_SECRET_BYTES}.."
                                             f"{MAX_SECRET_BYTES} bytes without control"
                                             " characters", re)


def valid_secret(secret: str) -> bool:
    """True when ``secret`` has the shape of an account secret (see PROTOCOL.md, Accounts).

        >>> valid_secret("correct horse"), valid_secret("short"), valid_secret("tab\\there!")
        (True, False, False)
    """
    size = len(secret.encode("utf-8", "surrogatepass"))
    if not MIN_SECRET_BYTES <= size <= MAX_SECRET_BYTES:
        return False
    return not any(unicodedata.category(c) == "Cc" for c in secret)


def is_room_key(value: str) -> bool:
    """True when ``value`` can be a room key: 1 to 64 characters, no control character (Cc)."""
    return 1 <= len(value) <= MAX_KEY_CHARS and not any(
        unicodedata.category(c) == "Cc" for c in value
    )


def is_message_id(value: str) -> bool:
    """True when ``value`` has the shape of a message id (``history`` ``before``/``after``).

    That is a UUID in its 36-character hyphenated form (8-4-4-4-12 hexadecimal
    digits, either case), the way the server writes message ids.  Other UUID
    spellings (braces, ``urn:uuid:``, no hyphens) are refused.
    """
    return _MESSAGE_ID.fullmatch(value) is not None


def _check_fields(frame: Mapping[str, Any], fields: Mapping[str, _Types], what: str) -> None:
    for name, types in fields.items():
        if name not in frame or not _is_type(frame[name], types):
            raise ProtocolError("bad_frame", f"{what}: missing or invalid field: {name}")


def check_server_frame(frame: Mapping[str, Any]) -> None:
    """Check that a frame from the server has the fields its type promises.

    Unknown frame types and unknown ``ok`` commands pass (a newer server may send
    them, and clients must ignore what they do not know).  Raises
    :class:`ProtocolError` with code ``bad_frame`` when a known frame is malformed.
    """
    type_ = frame.get("type")
    if not isinstance(type_, str):
        raise ProtocolError("bad_frame", "missing or invalid field: type")
    if "re" in frame and not _valid_id(frame["re"]):
        raise ProtocolError("bad_frame", f"{type_}: invalid field: re")
    _check_fields(frame, _SERVER_FIELDS.get(type_, {}), type_)
    if type_ == "ok":
        _check_fields(frame, _OK_FIELDS.get(frame["cmd"], {}), f"ok {frame['cmd']}")
        if frame["cmd"] == "rooms" and frame.get("next") is not None:
            _check_fields(frame, {"next": _STR}, "ok rooms")
        optional = _OK_OPTIONAL.get(frame["cmd"], {})
        present = {k: v for k, v in optional.items() if frame.get(k) is not None}
        _check_fields(frame, present, f"ok {frame['cmd']}")
    if type_ in EVENT_TYPES and "re" in frame:
        raise ProtocolError("bad_frame", f"{type_}: events carry no re")


def recipient_away(reply: Mapping[str, Any]) -> Optional[Tuple[str, Optional[str]]]:
    """``(to, away_text)`` when the ``ok`` reply to a ``dm`` says its recipient is away or busy.

    The server's extension: such a reply carries ``"away": true`` and, when the recipient set
    a status text, ``away_text``.  ``None`` for any other reply (or an older server's).
    """
    if reply.get("type") != "ok" or reply.get("cmd") != "dm" or reply.get("away") is not True:
        return None
    text = reply.get("away_text")
    return str(reply.get("to", "")), text if isinstance(text, str) else None


def frame_kind(frame: Mapping[str, Any]) -> str:
    """What a client does with a server frame: its ``type`` when known, else ``"ignore"``.

    Known types are the replies (``welcome``, ``ok``, ``error``), ``bye`` and the
    events in :data:`EVENT_TYPES`.  Frames of a type added by a later server
    version are ignored, as the protocol's versioning rules ask.
    """
    type_ = frame.get("type")
    return type_ if isinstance(type_, str) and type_ in _SERVER_FIELDS else "ignore"


#: The Hangul fillers: letters (``str.isalnum`` is true) that render as a blank.  The
#: server refuses every default-ignorable character; these are the only ones that pass
#: the letter-or-digit rule, so refusing them here catches all of them.
HANGUL_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")


def valid_name(name: str) -> bool:
    """True when ``name`` passes the name rules a client checks.

    1 to 32 characters, each a letter, a digit, ``_``, ``-`` or ``.``, and none of the
    invisible Hangul fillers.  Letters and digits are Unicode ones (``str.isalnum``; the
    Rust server uses ``char::is_alphanumeric``, which agrees except on rare combining
    marks).  The server also refuses mixed scripts and compares names by their Unicode
    TR39 skeleton; a client need not (PROTOCOL.md, "Names"), so a name valid here can
    still get ``nick_invalid``, ``nick_taken`` or ``room_invalid``.
    """
    return 1 <= len(name) <= MAX_NAME_CHARS and all(
        (c.isalnum() and c not in HANGUL_FILLERS) or c in "_-." for c in name
    )


def validate(kind: str, value: str) -> Optional[str]:
    """Return the error code the server gives ``value`` used as ``kind``, or None if valid.

    ``kind`` is ``"nick"``, ``"room"``, ``"text"`` (say and dm: 1..4096 bytes),
    ``"status_text"`` (0..100 characters, empty means none) or ``"topic"``
    (0..300 characters, empty clears it).  These are the checks of
    ``interop/vectors/validate.jsonl``.
    """
    if kind == "nick":
        return None if valid_name(value) else "nick_invalid"
    if kind == "room":
        return None if valid_name(value) else "room_invalid"
    if kind == "text":
        return check_text(value)
    limits = {"status_text": MAX_STATUS_TEXT_CHARS, "topic": MAX_TOPIC_CHARS}
    if kind in limits:
        return check_text(value, max_bytes=None, max_chars=limits[kind]) if value else None
    raise ValueError(f"unknown kind {kind!r}")


def check_text(text: str, max_bytes: Optional[int] = DEFAULT_MAX_TEXT,
               max_chars: Optional[int] = None) -> Optional[str]:
    """Return the error code the server would give ``text``, or None when it is valid.

    ``text_invalid`` for an empty text; then ``text_too_long`` when over ``max_bytes``
    UTF-8 bytes or ``max_chars`` characters; then ``text_invalid`` for a control
    character (category Cc) other than LF and TAB.  Message text (say, dm) is limited in bytes; status
    text (100) and topics (300) in characters, where empty is allowed by the caller.
    """
    if not text:
        return "text_invalid"
    if max_bytes is not None and len(text.encode("utf-8")) > max_bytes:
        return "text_too_long"
    if max_chars is not None and len(text) > max_chars:
        return "text_too_long"
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        return "text_invalid"
    return None
