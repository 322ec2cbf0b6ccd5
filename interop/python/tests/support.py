"""Shared test helpers: paths, vector files, a scripted fake server, the real server process."""

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent.parent
VECTORS = REPO / "interop" / "vectors"
EXAMPLES = PYTHON_DIR / "examples"

if str(PYTHON_DIR) not in sys.path:  # run from anywhere, not only interop/python
    sys.path.insert(0, str(PYTHON_DIR))

from lanchat import Client, Frame  # noqa: E402
from lanchat.protocol import decode_line, encode_frame  # noqa: E402

WAIT = 5.0
"""Seconds any single wait in a test may take before it fails."""


def load_vectors(name: str) -> List[Dict[str, Any]]:
    """The entries of ``interop/vectors/<name>``; fails clearly when the file is missing."""
    path = VECTORS / name
    if not path.is_file():
        raise AssertionError(f"test vector file {path} is missing")
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def python_env() -> Dict[str, str]:
    """The environment for a subprocess that imports lanchat from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# -- a fake server over a socketpair ----------------------------------------

def default_answer(request: Frame) -> List[Frame]:
    """What a well-behaved server would answer, minimally: welcome, ok, bye or nothing."""
    type_, re = request.get("type"), request.get("id")
    tag = {} if re is None else {"re": re}
    if type_ == "pong":
        return []
    if type_ == "hello":
        return [{"type": "welcome", **tag, "protocol": 1, "server": "fake/0", "name": "fake",
                 "session": "00000000-0000-4000-8000-000000000000", "nick": request.get("nick"),
                 "rooms": ["lobby"], "motd": "",
                 "limits": {"max_line": 16384, "max_text": 4096, "rate_burst": 10,
                            "rate_per_sec": 5, "ping_interval_s": 60}}]
    if type_ == "quit":
        return [{"type": "bye", "reason": "quit", "message": "goodbye"}]
    return [{"type": "ok", "cmd": type_, **tag}]


class FakeServer:
    """The far end of a socketpair: records each line the client sends and answers it.

    ``answer`` maps a decoded request to the frames to send back (default:
    :func:`default_answer`); raw lines can be pushed with :meth:`send_line`.
    """

    def __init__(self, answer: Callable[[Frame], List[Frame]] = default_answer) -> None:
        self.client_sock, self._sock = socket.socketpair()
        self.received: "queue.Queue[bytes]" = queue.Queue()
        self._answer = answer
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._sock.makefile("rb") as stream:
            for line in stream:
                self.received.put(line)
                for frame in self._answer(decode_line(line)):
                    try:
                        self.send_line(encode_frame(frame))
                    except OSError:
                        return

    def send_line(self, line: bytes) -> None:
        """Send raw bytes to the client."""
        with self._lock:
            self._sock.sendall(line)

    def next_line(self) -> bytes:
        """The next line the client sent (fails after :data:`WAIT` seconds)."""
        try:
            return self.received.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError("the client sent nothing") from None

    def hang_up(self) -> None:
        """Close the server's end."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def fake_client(test: unittest.TestCase, answer: Callable[[Frame], List[Frame]] = default_answer,
                **options: Any) -> Tuple[Client, FakeServer]:
    """A Client attached to a FakeServer; both are closed when ``test`` ends."""
    server = FakeServer(answer)
    client = Client(timeout=WAIT, **options).attach(server.client_sock)
    test.addCleanup(server.hang_up)
    test.addCleanup(client.close)
    return client, server


# -- the real server --------------------------------------------------------

def server_binary() -> Path:
    """Where the lanchat-server binary is: $LANCHAT_SERVER_BIN or target/debug."""
    override = os.environ.get("LANCHAT_SERVER_BIN")
    return Path(override) if override else REPO / "target" / "debug" / "lanchat-server"


def free_udp_port() -> int:
    """A UDP port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real lanchat-server on 127.0.0.1 with a kernel-chosen port.

    Started with ``--listen 127.0.0.1:0`` (or ``listen``: a restarted server takes the
    port of the one before it) plus ``args``; the port is read from the
    first stdout line, ``listening 127.0.0.1:PORT``, and, unless TLS is off, the
    certificate's fingerprint from the ``tls_sha256 HEX`` line that follows the
    ``listening`` lines (:attr:`tls_sha256`, None without TLS).  ``require_tls`` and
    ``no_tls`` add those flags, ``data_dir`` gives ``--data-dir``, and ``log`` sets
    ``RUST_LOG`` (e.g. ``"debug"``; see :meth:`stderr_text` and :meth:`wait_for_log`).
    The server gets a private ``XDG_STATE_HOME``, removed by :meth:`stop`, so that no
    certificate is ever written into the real home.  :meth:`stop` kills it.
    """

    def __init__(self, *args: str, require_tls: bool = False, no_tls: bool = False,
                 data_dir: Union[None, str, Path] = None, log: Optional[str] = None,
                 listen: str = "127.0.0.1:0") -> None:
        binary = server_binary()
        if not binary.is_file():
            raise AssertionError(
                f"lanchat-server not found at {binary}: run `cargo build --workspace --bins` "
                "in the repository root first (or set LANCHAT_SERVER_BIN)")
        self._stderr_lines: List[str] = []
        self._stderr_cond = threading.Condition()
        # LANCHAT_* variables set server options: keep the caller's out of the test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LANCHAT_")}
        # The server makes a TLS certificate in $XDG_STATE_HOME: never in the real home.
        self._state_home = tempfile.TemporaryDirectory(prefix="lanchat-state-")
        env["XDG_STATE_HOME"] = self._state_home.name
        if log is not None:
            env["RUST_LOG"] = log
        flags = list(args)
        flags += ["--require-tls"] if require_tls else []
        flags += ["--no-tls"] if no_tls else []
        flags += ["--data-dir", str(data_dir)] if data_dir is not None else []
        self.tls_sha256: Optional[str] = None
        """The certificate's fingerprint, as the server printed it (None with --no-tls)."""
        self.process = subprocess.Popen(
            [str(binary), "--listen", listen, *flags], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stdout: "queue.Queue[bytes]" = queue.Queue()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        self._stderr_drainer = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_drainer.start()
        try:
            first = self._stdout.get(timeout=WAIT * 2).decode("utf-8", "replace").strip()
        except queue.Empty:
            self.stop()
            raise AssertionError(f"lanchat-server printed nothing in {WAIT * 2} s;"
                                 f" stderr: {self.stderr_text()}") from None
        word, _, address = first.partition(" ")
        host, _, port = address.rpartition(":")
        if word != "listening" or not port.isdigit():
            self.stop()
            raise AssertionError(f"expected 'listening 127.0.0.1:PORT' from lanchat-server, got"
                                 f" {first!r}; stderr: {self.stderr_text()}")
        self.host, self.port = host, int(port)
        if "--no-tls" not in flags:
            self.tls_sha256 = self._read_fingerprint()

    def _read_fingerprint(self) -> str:
        """The ``tls_sha256 HEX`` line, after the other ``listening`` lines."""
        while True:
            try:
                line = self._stdout.get(timeout=WAIT * 2).decode("utf-8", "replace").strip()
            except queue.Empty:
                line = ""
            word, _, value = line.partition(" ")
            if word == "tls_sha256" and len(value) == 64:
                return value
            if word != "listening":
                self.stop()
                raise AssertionError(f"expected 'tls_sha256 HEX' from lanchat-server, got"
                                     f" {line!r}; stderr: {self.stderr_text()}")

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # keep reading so the server never blocks on stdout
            self._stdout.put(line)
        self._stdout.put(b"")

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._stderr_cond:
                self._stderr_lines.append(raw.decode("utf-8", "replace"))
                self._stderr_cond.notify_all()

    def stderr_text(self, whole: bool = False) -> str:
        """What the server wrote on stderr so far (the last 2000 characters, unless ``whole``)."""
        with self._stderr_cond:
            text = "".join(self._stderr_lines)
        return text if whole else text[-2000:]

    def wait_for_log(self, *words: str, timeout: float = WAIT) -> str:
        """The first stderr line containing every one of ``words``, waiting for it at most
        ``timeout`` seconds (then the test fails)."""
        def find() -> Optional[str]:
            return next((line for line in self._stderr_lines
                         if all(word in line for word in words)), None)
        with self._stderr_cond:
            if not self._stderr_cond.wait_for(lambda: find() is not None, timeout):
                raise AssertionError(f"lanchat-server logged no line with {words} in {timeout} s;"
                                     f" stderr: {''.join(self._stderr_lines)[-2000:]}")
            line = find()
        assert line is not None
        return line

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        self._drainer.join(WAIT)  # stdout ends when the process is gone
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr_drainer.join(WAIT)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self._state_home.cleanup()

