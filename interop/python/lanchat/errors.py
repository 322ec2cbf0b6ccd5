"""Exceptions raised by the lanchat client."""

from typing import Any, Mapping, Optional

__all__ = ["LanchatError", "ConnectionClosed", "LanchatTimeout", "FingerprintMismatch"]


class LanchatError(Exception):
    """An error reply from the server, or a failure of the client itself.

    ``code`` is the protocol's error code (``nick_taken``, ``not_in_room``, ...) for
    server errors, or one of the client's own codes: ``timeout``,
    ``connection_lost``, ``closed``, ``line_too_long`` (refused before sending),
    ``tls_fingerprint_mismatch`` (:class:`FingerprintMismatch`), ``tls_unpinned`` (a
    password refused on a connection whose certificate is not pinned).
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


class FingerprintMismatch(LanchatError):
    """The server's TLS certificate is not the pinned one (code ``tls_fingerprint_mismatch``).

    Raised by :meth:`Client.connect` after the handshake and before anything is
    sent; the socket is closed.  ``expected`` is the pin and ``presented`` the
    fingerprint of the certificate the server showed, both in lowercase hex.  It
    is never a reason to fall back to plain TCP: either the server's certificate
    changed (ask its operator) or someone else answered.
    """

    def __init__(self, expected: str, presented: str) -> None:
        super().__init__("tls_fingerprint_mismatch",
                         f"the server's certificate has SHA-256 {presented}, "
                         f"not the pinned {expected}")
        self.expected = expected
        self.presented = presented
