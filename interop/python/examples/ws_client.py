#!/usr/bin/env python3
"""lanchat over WebSocket with the standard library only: says hello, joins a room, prints.

The server's chat port also speaks WebSocket at ``/ws`` (PROTOCOL.md, "WebSocket transport"):
one protocol line per text message. This is the smallest client of it that follows RFC 6455
(masked frames, ping/pong, the close handshake), to show bot writers the second transport; a
real bot may prefer the ``websockets`` package. Plain ``ws://`` only: for ``wss://`` wrap the
socket with ``ssl`` and pin the fingerprint as ``lanchat.Client`` does.

Usage: python3 ws_client.py HOST[:PORT] [NICK [ROOM]] [--say TEXT]
"""

import base64
import hashlib
import json
import os
import socket
import struct
import sys
from typing import Any, Dict, Optional, Tuple

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


class WebSocket:
    """A client WebSocket carrying text messages, over one blocking socket."""

    def __init__(self, host: str, port: int, path: str = "/ws", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1024)
            if not chunk:
                raise ConnectionError("the server closed during the handshake")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise ConnectionError(f"no upgrade: {lines[0]}")
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionError("bad Sec-WebSocket-Accept")

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one frame (FIN set), masked as every client frame must be."""
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_frame(self, frame: Dict[str, Any]) -> None:
        """Send one protocol frame as one text message (no newline)."""
        self.send(OP_TEXT, json.dumps(frame, ensure_ascii=False).encode())

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _frame(self) -> Tuple[bool, int, bytes]:
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return bool(first & 0x80), first & 0x0F, self._read(n)  # server frames are unmasked

    def receive(self) -> Optional[Dict[str, Any]]:
        """The next protocol frame; answers pings; None once the server has closed."""
        message = b""
        while True:
            fin, opcode, payload = self._frame()
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self.send(OP_CLOSE, payload[:2])
                self.sock.close()
                return None
            elif opcode != OP_PONG:
                message += payload
                if fin:
                    return json.loads(message)


def render(frame: Dict[str, Any]) -> str:
    """One line of text for a frame."""
    kind = frame.get("type")
    if kind == "message":
        return f"[{frame['room']}] <{frame['from']}> {frame['text']}"
    if kind == "direct":
        return f"(dm) <{frame['from']}> {frame['text']}"
    if kind in ("join", "leave"):
        return f"[{frame['room']}] {frame['nick']} {'joined' if kind == 'join' else 'left'}"
    return json.dumps(frame, ensure_ascii=False)


def main() -> None:
    args = sys.argv[1:]
    say = None
    if "--say" in args:
        at = args.index("--say")
        say = args[at + 1]
        del args[at:at + 2]
    if not args:
        sys.exit(__doc__)
    host, _, port = args[0].rpartition(":") if ":" in args[0] else (args[0], "", "7878")
    nick = args[1] if len(args) > 1 else "wsclient"
    room = args[2] if len(args) > 2 else None
    ws = WebSocket(host, int(port))
    ws.send_frame({"type": "hello", "id": 1, "nick": nick, "client": "ws_client.py"})
    if room:
        ws.send_frame({"type": "join", "id": 2, "room": room})
    if say:
        ws.send_frame({"type": "say", "id": 3, "room": room or "lobby", "text": say})
    while True:
        frame = ws.receive()
        if frame is None:
            break
        if frame.get("type") == "ping":  # the protocol's keepalive, not WebSocket's
            ws.send_frame({"type": "pong"})
            continue
        print(render(frame), flush=True)


if __name__ == "__main__":
    main()
