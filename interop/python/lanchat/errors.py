"""Exceptions raised by the lanchat client."""

from typing import Any, Mapping, Optional

__all__ = ["LanchatError", "ConnectionClosed", "LanchatTimeout"]


class LanchatError(Exception):
    """An error reply from the server, or a failure of the client itself.

    ``code`` is the protocol's error code (``nick_taken``, ``not_in_room``, ...) for
    server errors, or one of the client's own codes: ``timeout``,
    ``connection_lost``, ``closed``, ``line_too_long`` (refused before sending).
    ``frame`` is the server's error frame when there was one.
    ``retry_after`` is, for ``rate_limited``, how many seconds until the same request
    would be accepted, when the server said (an extension); otherwise ``None``.
    """

    def __init__(self, code: str, message: str = "",
                 frame: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.frame = frame
        retry = frame.get("retry_after_ms") if frame is not None else None
        valid = isinstance(retry, int) and not isinstance(retry, bool) and retry >= 0
        self.retry_after: Optional[float] = retry / 1000 if valid else None

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> "LanchatError":
        """Build the exception for an ``error`` frame."""
        return cls(str(frame.get("code", "unknown")), str(frame.get("message", "")), frame)


class ConnectionClosed(LanchatError):
    """The connection is over.

    ``code`` is the ``bye`` reason when the server said goodbye (``quit``,
    ``ping_timeout``, ``shutting_down``, ...), ``connection_lost`` when the
    connection ended without one, or ``closed`` after :meth:`Client.close`.
    """


class LanchatTimeout(LanchatError, TimeoutError):
    """No reply or event arrived in time (``code`` is ``timeout``)."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)
