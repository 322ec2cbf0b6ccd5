"""TLS against the real lanchat-server binary, on 127.0.0.1 only: pinning, refusals, discovery.

Every server here gets a private XDG_STATE_HOME (see support.ServerProcess), so the
certificate it makes never lands in the real home.  Like test_e2e, these tests fail
(they do not skip) when the server binary is missing.
"""

import hashlib
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path
from typing import Any, Callable, List, Optional
from unittest import mock

from support import WAIT, ServerProcess, free_udp_port, python_env

import lanchat.client
from lanchat import (
    TRUST_ON_FIRST_USE,
    Client,
    ConnectionClosed,
    FingerprintMismatch,
    Frame,
    LanchatError,
    discover,
    parse_fingerprint,
)


def matching(type_: str, **fields: Any) -> Callable[[Frame], bool]:
    """A predicate for an event of ``type_`` whose fields have the given values."""
    return lambda e: e.get("type") == type_ and all(e.get(k) == v for k, v in fields.items())


def other_fingerprint(fingerprint: str) -> str:
    """A well-formed fingerprint that is not ``fingerprint`` (its last digit changed)."""
    return fingerprint[:-1] + ("0" if fingerprint[-1] != "0" else "1")


class TlsTestCase(unittest.TestCase):
    """Helpers: a server per test, clients closed at the end, the CLI as a subprocess."""

    def start(self, *args: str, **options: Any) -> ServerProcess:
        server = ServerProcess(*args, **options)
        self.addCleanup(server.stop)
        return server

    def client(self, server: ServerProcess, nick: Optional[str] = None, **tls: Any) -> Client:
        """A client of ``server`` (TLS options as for Client.connect), registered when ``nick``."""
        client = Client(timeout=WAIT).connect(server.host, server.port, **tls)
        self.addCleanup(client.close)
        if nick is not None:
            client.hello(nick)
        return client

    def run_cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """``python3 -m lanchat ARGS``; fails the test on a hang."""
        return subprocess.run([sys.executable, "-m", "lanchat", *args], input=stdin.encode(),
                              env=python_env(), capture_output=True, timeout=WAIT * 4)

    def assert_only_members(self, client: Client, *nicks: str) -> None:
        self.assertEqual(sorted(m["nick"] for m in client.who("lobby")["members"]), sorted(nicks))


class TlsChatTests(TlsTestCase):
    def setUp(self) -> None:
        self.server = self.start("--no-announce", "--rate-per-sec", "0")
        assert self.server.tls_sha256 is not None

    def test_tls_and_plain_clients_share_a_room(self) -> None:
        ann = self.client(self.server, "ann", tls_fingerprint=self.server.tls_sha256)
        bob = self.client(self.server, "bob")
        self.assertEqual((ann.tls_sha256, ann.tls_pinned), (self.server.tls_sha256, True))
        self.assertEqual((bob.tls_sha256, bob.tls_pinned), (None, False))
        ann.wait_for(matching("join", room="lobby", nick="bob"), WAIT)
        ok = ann.say("lobby", "über TLS 👋")
        message = bob.wait_for(matching("message", room="lobby"), WAIT)
        self.assertEqual((message["from"], message["text"], message["id"]),
                         ("ann", "über TLS 👋", ok["id"]))
        bob.say("lobby", "plain back")
        self.assertEqual(ann.wait_for(matching("message", room="lobby"), WAIT)["text"],
                         "plain back")
        bob.dm("ann", "psst")
        self.assertEqual(ann.wait_for(matching("direct"), WAIT)["text"], "psst")
        self.assertEqual(ann.quit()["reason"], "quit")
        bob.wait_for(matching("quit", nick="ann"), WAIT)

    def test_the_pin_accepts_either_case_and_tls_is_at_least_1_2(self) -> None:
        fingerprint = self.server.tls_sha256
        assert fingerprint is not None
        ann = self.client(self.server, "ann", tls_fingerprint=fingerprint.upper())
        self.assertEqual(ann.tls_sha256, fingerprint)
        assert isinstance(ann._sock, ssl.SSLSocket)
        self.assertIn(ann._sock.version(), ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(ann.ping()["cmd"], "ping")

    def test_large_replies_and_concurrent_senders_over_tls(self) -> None:
        """Lines of many TLS records, and senders on several threads while the reader reads."""
        ann = self.client(self.server, "ann", tls_fingerprint=self.server.tls_sha256)
        bob = self.client(self.server, "bob")
        ann.wait_for(matching("join", room="lobby", nick="bob"), WAIT)
        errors: List[BaseException] = []

        def send(tag: str) -> None:
            try:
                for n in range(30):
                    ann.say("lobby", f"{tag}{n:02} " + "x" * 3000)
            except BaseException as exc:  # reported by the test below
                errors.append(exc)
        threads = [threading.Thread(target=send, args=(tag,)) for tag in "abc"]
        for thread in threads:
            thread.start()
        for _ in range(10):  # replies of up to 300 KB arrive while the threads send
            ann.history("lobby", limit=200)
        for thread in threads:
            thread.join(WAIT * 4)
        self.assertEqual(errors, [])
        texts = [m["text"][:3] for m in ann.history("lobby", limit=200)["messages"]]
        self.assertEqual(sorted(texts), sorted(f"{t}{n:02}" for t in "abc" for n in range(30)))
        received = [bob.wait_for(matching("message", room="lobby"), WAIT)["text"][:3]
                    for _ in range(90)]
        for tag in "abc":  # each thread's messages in its order
            self.assertEqual([t for t in received if t[0] == tag],
                             [f"{tag}{n:02}" for n in range(30)])

    def test_tls_1_2_works_too(self) -> None:
        def at_most_1_2() -> ssl.SSLContext:
            context = real_context()
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            return context
        real_context = lanchat.client.client_context
        with mock.patch.object(lanchat.client, "client_context", at_most_1_2):
            ann = self.client(self.server, "ann", tls_fingerprint=self.server.tls_sha256)
        assert isinstance(ann._sock, ssl.SSLSocket)
        self.assertEqual(ann._sock.version(), "TLSv1.2")
        bob = self.client(self.server, "bob")
        bob.say("lobby", "to a TLS 1.2 client")
        self.assertEqual(ann.wait_for(matching("message", room="lobby"), WAIT)["text"],
                         "to a TLS 1.2 client")
        self.assertEqual(len(ann.history("lobby")["messages"]), 1)

    def test_server_shutdown_and_close_end_a_tls_client(self) -> None:
        ann = self.client(self.server, "ann", tls_fingerprint=self.server.tls_sha256)
        idle = self.client(self.server, "bob", tls_fingerprint=self.server.tls_sha256)
        idle.close()  # its reader is waiting for the socket: closing must end it
        assert idle._reader is not None
        idle._reader.join(WAIT)
        self.assertFalse(idle._reader.is_alive())
        self.assertEqual(idle.close_reason.code, "closed")
        ann.wait_for(matching("quit", nick="bob"), WAIT)
        self.server.process.terminate()
        self.assertEqual(list(ann.events(timeout=WAIT)), [])  # the bye is read over TLS
        self.assertEqual(ann.close_reason.code, "shutting_down")

    def test_wrong_pin_raises_and_sends_nothing(self) -> None:
        server = self.start("--no-announce", log="debug")
        assert server.tls_sha256 is not None
        wrong = other_fingerprint(server.tls_sha256)
        mallory = Client(timeout=WAIT)
        with self.assertRaises(FingerprintMismatch) as caught:
            mallory.connect(server.host, server.port, tls_fingerprint=wrong)
        error = caught.exception
        self.assertEqual((error.code, error.expected, error.presented),
                         ("tls_fingerprint_mismatch", wrong, server.tls_sha256))
        self.assertIn(wrong, str(error))
        self.assertIn(server.tls_sha256, str(error))
        self.assertIsInstance(error, LanchatError)
        # The handshake completed, then the client hung up without a line: the server's
        # session ended before any hello.
        server.wait_for_log("disconnected before hello")
        self.assertNotIn("registered", server.stderr_text(whole=True))
        with self.assertRaises(LanchatError):  # the client holds no connection
            mallory.hello("mallory")
        checker = self.client(server, "checker")
        self.assert_only_members(checker, "checker")

    def test_trust_on_first_use_reports_the_fingerprint_and_keeps_the_password(self) -> None:
        first = self.client(self.server, tls=TRUST_ON_FIRST_USE)
        self.assertEqual((first.tls_sha256, first.tls_pinned), (self.server.tls_sha256, False))
        with self.assertRaises(LanchatError) as caught:
            first.hello("ann", password="secret")
        self.assertEqual(caught.exception.code, "tls_unpinned")
        self.assertEqual(first.hello("ann")["nick"], "ann")  # without a password: fine
        # Next time, the recorded fingerprint is the pin.
        again = self.client(self.server, "bob", tls_fingerprint=first.tls_sha256)
        self.assertTrue(again.tls_pinned)


class ArgumentTests(unittest.TestCase):
    """Bad TLS arguments are ValueErrors raised before any connection is attempted."""

    def test_malformed_fingerprints(self) -> None:
        good = "ab" * 32
        self.assertEqual(parse_fingerprint(good.upper()), good)
        for bad in ("", "ab" * 31, "ab" * 33, "g" * 64, " " + "ab" * 31 + "a", "0x" + "a" * 62,
                    "ab:" * 21 + "a", "１" * 64, None, 12, b"ab" * 32):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    parse_fingerprint(bad)
                if bad is None:
                    continue  # for connect, None is "no fingerprint": plain TCP
                with self.assertRaises(ValueError):  # port 9 would refuse: nothing was tried
                    Client(timeout=WAIT).connect("127.0.0.1", 9, tls_fingerprint=bad)

    def test_inconsistent_tls_options(self) -> None:
        pin = "ab" * 32
        for options in ({"tls": True}, {"tls": False, "tls_fingerprint": pin},
                        {"tls": TRUST_ON_FIRST_USE, "tls_fingerprint": pin}, {"tls": "yes"}):
            with self.subTest(options), self.assertRaises(ValueError):
                Client(timeout=WAIT).connect("127.0.0.1", 9, **options)


class RequireTlsTests(TlsTestCase):
    def setUp(self) -> None:
        self.server = self.start("--no-announce", require_tls=True)

    def test_plain_client_is_refused_with_tls_required(self) -> None:
        plain = self.client(self.server)
        with self.assertRaises(ConnectionClosed) as caught:
            plain.hello("ann")
        self.assertEqual(caught.exception.code, "tls_required")
        self.assertEqual(plain.close_reason.code, "tls_required")
        events = list(plain.events(timeout=WAIT))  # the error came first, without re
        self.assertEqual([(e["type"], e.get("code")) for e in events], [("error", "tls_required")])
        tls = self.client(self.server, "bob", tls_fingerprint=self.server.tls_sha256)
        self.assert_only_members(tls, "bob")


class DiscoveryTlsTests(TlsTestCase):
    def test_beacon_fingerprint_is_the_printed_one_and_pins(self) -> None:
        udp_port = free_udp_port()
        server = self.start("--announce-port", str(udp_port), "--name", "py-tls")
        servers = discover(timeout=0.5, port=udp_port, hosts=["127.0.0.1"], broadcast=False,
                           listen=False)
        ours = [s for s in servers if s.port == server.port]
        self.assertEqual(len(ours), 1, servers)
        found = ours[0]
        self.assertEqual((found.name, found.tls_sha256, found.conflict),
                         ("py-tls", server.tls_sha256, False))
        ann = Client(timeout=WAIT).connect(*found.address, tls_fingerprint=found.tls_sha256)
        self.addCleanup(ann.close)
        self.assertEqual(ann.hello("ann")["nick"], "ann")

    def test_without_tls_there_is_no_fingerprint_anywhere(self) -> None:
        udp_port = free_udp_port()
        server = self.start("--announce-port", str(udp_port), no_tls=True)
        self.assertIsNone(server.tls_sha256)
        servers = discover(timeout=0.5, port=udp_port, hosts=["127.0.0.1"], broadcast=False,
                           listen=False)
        self.assertEqual([(s.port, s.tls_sha256) for s in servers], [(server.port, None)])
        with self.assertRaises(ssl.SSLError):  # the server answers a handshake in plain JSON
            Client(timeout=WAIT).connect(server.host, server.port, tls_fingerprint="ab" * 32)
        self.assert_only_members(self.client(server, "ann"), "ann")


class DataDirTests(TlsTestCase):
    def test_the_certificate_is_kept_in_the_data_dir_across_restarts(self) -> None:
        directory = tempfile.TemporaryDirectory(prefix="lanchat-data-")
        self.addCleanup(directory.cleanup)
        first = self.start("--no-announce", data_dir=directory.name)
        pem = (Path(directory.name) / "tls" / "cert.pem").read_text(encoding="ascii")
        # The fingerprint is the SHA-256 of the DER certificate (the first in the file).
        der = ssl.PEM_cert_to_DER_cert(pem[:pem.index("-----END CERTIFICATE-----") + 25])
        self.assertEqual(hashlib.sha256(der).hexdigest(), first.tls_sha256)
        first.stop()
        second = self.start("--no-announce", data_dir=directory.name)
        self.assertEqual(second.tls_sha256, first.tls_sha256)
        ann = self.client(second, "ann", tls_fingerprint=first.tls_sha256)
        self.assertTrue(ann.tls_pinned)


class CliTlsTests(TlsTestCase):
    def test_cli_with_the_right_fingerprint_chats_over_tls(self) -> None:
        server = self.start("--no-announce", require_tls=True)  # plain could not get through
        assert server.tls_sha256 is not None
        ann = self.client(server, "ann", tls_fingerprint=server.tls_sha256)
        result = self.run_cli(f"{server.host}:{server.port}", "--nick", "carl",
                              "--tls-fingerprint", server.tls_sha256.upper(),
                              stdin="hello over tls\n")
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        message = ann.wait_for(matching("message", **{"from": "carl"}), WAIT)
        self.assertEqual(message["text"], "hello over tls")

    def test_cli_with_a_wrong_fingerprint_exits_2_with_one_line(self) -> None:
        server = self.start("--no-announce")
        assert server.tls_sha256 is not None
        wrong = other_fingerprint(server.tls_sha256)
        result = self.run_cli(f"{server.host}:{server.port}", "--nick", "mallory",
                              "--tls-fingerprint", wrong, stdin="never sent\n")
        stderr = result.stderr.decode()
        self.assertEqual(result.returncode, 2, stderr)
        self.assertEqual(len(stderr.strip().splitlines()), 1, stderr)
        self.assertIn(wrong, stderr)
        self.assertIn(server.tls_sha256, stderr)
        self.assertEqual(result.stdout, b"")
        self.assert_only_members(self.client(server, "checker"), "checker")

    def test_cli_plain_to_a_server_requiring_tls_says_what_to_do(self) -> None:
        server = self.start("--no-announce", require_tls=True)
        result = self.run_cli(f"{server.host}:{server.port}", "--nick", "ann", stdin="hi\n")
        stderr = result.stderr.decode()
        self.assertEqual(result.returncode, 1, stderr)
        self.assertIn("the server requires TLS: pass --tls-fingerprint", stderr)

    def test_cli_pins_the_fingerprint_of_a_discovered_server(self) -> None:
        udp_port = free_udp_port()
        server = self.start("--announce-port", str(udp_port), "--name", "py-tls",
                            require_tls=True)  # so only a TLS connection can succeed
        ann = self.client(server, "ann", tls_fingerprint=server.tls_sha256)
        result = self.run_cli("@py-tls", "--discover-via", f"127.0.0.1:{udp_port}",
                              "--nick", "dee", stdin="found you\n")
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertEqual(ann.wait_for(matching("message", **{"from": "dee"}), WAIT)["text"],
                         "found you")

    def test_cli_discovery_with_an_explicit_wrong_pin_exits_2(self) -> None:
        udp_port = free_udp_port()
        server = self.start("--announce-port", str(udp_port), "--name", "py-tls")
        assert server.tls_sha256 is not None
        result = self.run_cli("@py-tls", "--discover-via", f"127.0.0.1:{udp_port}",
                              "--nick", "dee", "--tls-fingerprint",
                              other_fingerprint(server.tls_sha256))
        self.assertEqual(result.returncode, 2, result.stderr.decode())
        self.assertEqual(len(result.stderr.decode().strip().splitlines()), 1)

    def test_cli_discovery_finding_nothing_exits_1(self) -> None:
        udp_port = free_udp_port()
        self.start("--announce-port", str(udp_port), "--name", "py-tls")
        result = self.run_cli("@elsewhere", "--discover-via", f"127.0.0.1:{udp_port}",
                              "--nick", "dee")
        self.assertEqual(result.returncode, 1, result.stderr.decode())
        self.assertIn("py-tls", result.stderr.decode())  # what was heard instead


if __name__ == "__main__":
    unittest.main()
