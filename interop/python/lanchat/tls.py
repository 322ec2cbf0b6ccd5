"""TLS for the lanchat client: pinning a server's certificate by its fingerprint.

A lanchat server's certificate is usually self-signed, made once by the server
itself.  It is known by its *fingerprint*, the SHA-256 of the certificate in DER
written as 64 lowercase hex digits (``tls_sha256``): the server prints it at
start and puts it in every beacon.  The client trusts exactly the certificate
with the pinned fingerprint: no certificate authority, no host name, no dates.
The handshake itself still proves that the server holds that certificate's key.

:class:`TlsChannel` lets the client's reader thread and its senders share one
``ssl.SSLSocket``: OpenSSL does not allow two threads in one connection at once,
so every call into it is made under a lock, on a non-blocking socket, and the
threads wait for the socket outside the lock.
"""

import hashlib
import io
import selectors
import socket
import ssl
import string
import threading
from typing import Any, Optional

__all__ = [
    "SERVER_NAME",
    "TRUST_ON_FIRST_USE",
    "client_context",
    "fingerprint_of",
    "parse_fingerprint",
    "TlsChannel",
]

SERVER_NAME = "lanchat"
"""The name sent in SNI (PROTOCOL.md, "TLS"): lanchat's own certificates carry it; it is
not checked."""

TRUST_ON_FIRST_USE = "trust-on-first-use"
"""``Client.connect(tls=TRUST_ON_FIRST_USE)``: TLS accepting whatever certificate the
server presents; its fingerprint is then ``Client.tls_sha256``, for the caller to
check and record.  No password is sent on such a connection."""

_WAKE_INTERVAL = 1.0
"""Longest wait for the socket before a waiting thread checks whether the channel was closed
(closing also shuts the socket down, which wakes it at once)."""


def parse_fingerprint(text: Any) -> str:
    """Return ``text`` as a fingerprint in lowercase hex; ``ValueError`` unless it is 64 hex digits.

    Either case is accepted, as a user may type it; nothing else (no separators, no
    ``0x``, no spaces).
    """
    if not isinstance(text, str) or len(text) != 64 or not all(c in string.hexdigits
                                                                   for c in text):
        raise ValueError(f"a TLS fingerprint is 64 hex digits (the server's tls_sha256),"
                         f" not {text!r}")
    return text.lower()


def fingerprint_of(cert_der: bytes) -> str:
    """The fingerprint of a DER certificate: its SHA-256 in lowercase hex."""
    return hashlib.sha256(cert_der).hexdigest()


def client_context() -> ssl.SSLContext:
    """A client context for pinning: TLS 1.2 or later, no CA, no host name check.

    ``verify_mode`` is ``CERT_NONE`` because trust comes from the pin, which the
    caller checks on the certificate the server presented, before sending anything.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # must come before verify_mode
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class TlsChannel:
    """An ``SSLSocket`` shared by one reading thread and any number of sending threads.

    The socket is switched to non-blocking mode; each OpenSSL call is made under
    one lock and returns at once, and a thread that must wait (no full record to
    read yet, no room to write) waits for the socket after releasing the lock.
    The reader always tries to read before it waits, so bytes OpenSSL already
    holds are never stranded.  :meth:`close` wakes both sides.
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._lock = threading.RLock()
        self._closed = False

    def recv_into(self, buffer: Any) -> int:
        """Read decrypted bytes into ``buffer``; 0 at the end of the stream.  Blocks until then."""
        while True:
            with self._lock:
                if self._closed:
                    return 0
                try:
                    return self.sock.recv_into(buffer)
                except ssl.SSLWantReadError:
                    want_write = False
                except ssl.SSLWantWriteError:
                    want_write = True
            self._wait(want_write)

    def sendall(self, data: bytes) -> None:
        """Send all of ``data``, waiting for room as long as it takes (or until closed)."""
        view = memoryview(data)
        while view:
            with self._lock:
                if self._closed:
                    raise OSError("the TLS connection is closed")
                try:
                    view = view[self.sock.send(view):]
                    continue
                except ssl.SSLWantWriteError:  # retried below with the same bytes, as OpenSSL needs
                    want_write = True
                except ssl.SSLWantReadError:
                    want_write = False
            self._wait(want_write)

    def _wait(self, want_write: bool) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, selectors.EVENT_WRITE if want_write
                                  else selectors.EVENT_READ)
                selector.select(_WAKE_INTERVAL)
        except ValueError as exc:  # closed meanwhile: no file descriptor any more
            raise OSError("the TLS connection is closed") from exc

    def close(self) -> None:
        """Shut the socket down (waking any waiting thread) and close it.  Idempotent."""
        self._closed = True
        with self._lock:  # no thread is inside OpenSSL meanwhile (calls there never block)
            try:
                # The TCP socket's shutdown: SSLSocket.shutdown would also drop the TLS state.
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already disconnected
            self.sock.close()

    def reader(self) -> io.BufferedReader:
        """A buffered binary stream over this channel, for ``readline``."""
        return io.BufferedReader(_RawChannel(self), buffer_size=64 * 1024)


class _RawChannel(io.RawIOBase):
    """The reading side of a :class:`TlsChannel` as a raw stream."""

    def __init__(self, channel: TlsChannel) -> None:
        super().__init__()
        self._channel = channel

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> Optional[int]:
        return self._channel.recv_into(buffer)
