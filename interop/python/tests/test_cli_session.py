"""The command-line chat as a subprocess against the real lanchat-server, on 127.0.0.1 only.

Its stdin stays open (as at a terminal) unless a test closes it: /quit and the
server's shutdown must end the program cleanly, without the interpreter aborting.
Also /me, timestamps on join lines, and reconnection across a server restart with
catch-up from history.
"""

import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Callable, List, Optional

from support import WAIT, ServerProcess, python_env

from lanchat import Client, LanchatError

TIME = r"\d\d:\d\d:\d\d"


class CliProcess:
    """``python3 -m lanchat`` with pipes; stdout and stderr are read by threads into queues."""

    def __init__(self, test: unittest.TestCase, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lanchat", *args], env=python_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout: "queue.Queue[str]" = queue.Queue()
        self.stderr_lines: List[str] = []
        self._stderr_done = threading.Event()
        self._threads = [threading.Thread(target=self._drain_stdout, daemon=True),
                         threading.Thread(target=self._drain_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()
        self.seen: List[str] = []
        test.addCleanup(self.kill)

    def _drain_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.stdout.put(raw.decode("utf-8", "replace").rstrip("\n"))

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self.stderr_lines.append(raw.decode("utf-8", "replace"))
        self._stderr_done.set()

    def send(self, text: str) -> None:
        """Write lines to its stdin (left open)."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = WAIT) -> str:
        """The first stdout line for which ``predicate`` is true (those before are kept in
        :attr:`seen`); fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.stdout.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such stdout line in {timeout} s; got {self.seen};"
                                     f" stderr: {self.stderr()}") from None
            self.seen.append(line)
            if predicate(line):
                return line

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Its exit status, waiting at most ``timeout`` seconds; stderr is complete after."""
        status = self.process.wait(timeout)
        self._stderr_done.wait(WAIT)
        return status

    def stderr(self) -> str:
        """What it wrote on stderr so far."""
        return "".join(self.stderr_lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass  # a broken pipe to a dead process


def contains(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


class CliSessionTests(unittest.TestCase):
    def start_server(self, *args: str, **options: object) -> ServerProcess:
        server = ServerProcess("--no-announce", *args, **options)  # type: ignore[arg-type]
        self.addCleanup(server.stop)
        return server

    def connect(self, server: ServerProcess, nick: str) -> Client:
        client = Client(timeout=WAIT).connect(server.host, server.port)
        self.addCleanup(client.close)
        client.hello(nick)
        return client

    def cli(self, server: ServerProcess, *args: str) -> CliProcess:
        cli = CliProcess(self, f"{server.host}:{server.port}", "--nick", "ann", *args)
        cli.wait_line(contains("* connected to"))
        return cli

    def assert_clean_stderr(self, cli: CliProcess) -> None:
        self.assertNotIn("Fatal Python error", cli.stderr())
        self.assertNotIn("Traceback", cli.stderr())

    def test_quit_exits_0_while_stdin_is_open(self) -> None:
        server = self.start_server()
        bob = self.connect(server, "bob")
        cli = self.cli(server)
        cli.send("/quit see you\n")
        self.assertEqual(cli.wait_exit(), 0, cli.stderr())  # it used to abort: 134
        self.assertEqual(cli.stderr(), "")
        quit_event = bob.wait_for(lambda e: e.get("type") == "quit", WAIT)
        self.assertEqual((quit_event["nick"], quit_event["reason"]), ("ann", "see you"))

    def test_server_shutdown_exits_1_with_a_message(self) -> None:
        server = self.start_server()
        cli = self.cli(server, "--reconnect", "0")
        server.stop()
        self.assertEqual(cli.wait_exit(), 1, cli.stderr())
        self.assert_clean_stderr(cli)
        self.assertEqual(cli.stderr().splitlines(),
                         ["lanchat: disconnected: the server is shutting down;"
                          " not reconnecting (--reconnect 0)"])

    def test_server_gone_for_good_gives_up_after_the_attempts(self) -> None:
        server = self.start_server()
        cli = self.cli(server, "--reconnect", "1")
        server.stop()
        self.assertEqual(cli.wait_exit(WAIT * 2), 1, cli.stderr())  # one back-off of 1 s
        self.assert_clean_stderr(cli)
        lines = cli.stderr().splitlines()
        self.assertEqual(lines[0], "lanchat: disconnected: the server is shutting down;"
                                   " reconnecting in 1 s (attempt 1 of 1)")
        self.assertRegex(lines[-1], r"^lanchat: gave up reconnecting after 1 attempts:"
                                    r" cannot connect: .*refused")
        self.assertEqual(len(lines), 2, lines)

    def test_me_is_sent_like_the_rust_client_and_shown_as_an_action(self) -> None:
        server = self.start_server()
        bob = self.connect(server, "bob")
        cli = self.cli(server)
        cli.send("/me waves\n")
        message = bob.wait_for(lambda e: e.get("type") == "message", WAIT)
        self.assertEqual((message["room"], message["from"], message["text"]),
                         ("lobby", "ann", "/me waves"))
        bob.say("lobby", "/me waves back")
        line = cli.wait_line(contains("waves back"))
        self.assertRegex(line, rf"^{TIME} \[lobby\] \* bob waves back$")
        cli.send("/me\n")  # no action: a usage hint, nothing sent
        cli.send("/quit\n")
        self.assertEqual(cli.wait_exit(), 0)
        self.assertIn("/me needs an action", cli.stderr())

    def test_register_and_a_private_room_from_the_cli(self) -> None:
        server = self.start_server()
        bob = self.connect(server, "bob")
        cli = self.cli(server)
        # One request at a time, in order: bob's invitation shows the ones before were done.
        cli.send("/register tWv2x9Qm4bLk7rZp\n/join vault\n/mode +i\n/invite bob\n")
        invite = bob.wait_for(lambda e: e.get("type") == "invite", WAIT)
        self.assertEqual((invite["room"], invite["by"]), ("vault", "ann"))
        cli.send("/quit\n")
        self.assertEqual(cli.wait_exit(), 0, cli.stderr())
        self.assert_clean_stderr(cli)
        # The nick is ann's now: without the secret, nobody has it.
        other = Client(timeout=WAIT).connect(server.host, server.port)
        self.addCleanup(other.close)
        with self.assertRaises(LanchatError) as refused:
            other.hello("ann")
        self.assertEqual(refused.exception.code, "nick_registered")
        # Invite-only: bob gets in on the invitation, once.
        self.assertEqual(bob.join("vault")["room"], "vault")
        # The owner comes back with the secret from a file.
        with tempfile.NamedTemporaryFile("w", suffix=".secret", delete=False) as file:
            file.write("tWv2x9Qm4bLk7rZp\n")
        self.addCleanup(os.unlink, file.name)
        again = self.cli(server, "--secret-file", file.name)
        again.send("/quit\n")
        self.assertEqual(again.wait_exit(), 0, again.stderr())

    def test_join_lines_are_timestamped_like_messages(self) -> None:
        server = self.start_server()
        cli = self.cli(server)
        bob = self.connect(server, "bob")
        self.assertRegex(cli.wait_line(contains("bob joined")), rf"^{TIME} \[lobby\] \* bob joined$")
        bob.say("lobby", "hi")
        self.assertRegex(cli.wait_line(contains("<bob>")), rf"^{TIME} \[lobby\] <bob> hi$")
        bob.leave("lobby")
        self.assertRegex(cli.wait_line(contains("bob left")), rf"^{TIME} \[lobby\] \* bob left$")
        cli.send("/quit\n")
        self.assertEqual(cli.wait_exit(), 0)

    def test_reconnect_rejoins_and_catches_up_after_a_restart(self) -> None:
        data = tempfile.TemporaryDirectory(prefix="lanchat-data-")
        self.addCleanup(data.cleanup)
        first = self.start_server(data_dir=data.name)
        bob = self.connect(first, "bob")
        bob.join("rust")
        cli = self.cli(first, "--room", "rust")
        cli.wait_line(contains("[rust] * you joined"))
        bob.say("rust", "before the restart")
        cli.wait_line(contains("<bob> before the restart"))
        first.stop()
        bob.close()

        # While the CLI retries first's port, another server on the same data saves two
        # messages it cannot see; then a third takes the first's port.
        meanwhile = self.start_server(data_dir=data.name)
        cyd = self.connect(meanwhile, "cyd")
        cyd.join("rust")
        cyd.say("rust", "missed one")
        cyd.say("rust", "missed two")
        meanwhile.stop()
        cyd.close()
        third = self.start_server(data_dir=data.name, listen=f"127.0.0.1:{first.port}")

        # back-off 1, 2, 4, 8 s: bounded by the sum
        cli.wait_line(contains("* reconnected to"), timeout=16 + WAIT)
        self.assertRegex(cli.wait_line(contains("missed one")), rf"^{TIME} \[rust\] <cyd> missed one$")
        cli.wait_line(contains("<cyd> missed two"))
        dee = self.connect(third, "dee")
        self.assertIn("ann", [m["nick"] for m in dee.join("rust")["members"]])  # rejoined rust
        dee.say("rust", "live again")
        cli.wait_line(contains("<dee> live again"))
        self.assertEqual(sum("before the restart" in line for line in cli.seen), 1, cli.seen)
        self.assertNotIn("may be missing", cli.stderr())
        cli.send("plain line goes to rust\n")
        self.assertEqual(dee.wait_for(lambda e: e.get("type") == "message", WAIT)["text"],
                         "plain line goes to rust")
        cli.send("/quit\n")
        self.assertEqual(cli.wait_exit(), 0, cli.stderr())
        self.assert_clean_stderr(cli)
        self.assertIn("lanchat: disconnected: the server is shutting down; reconnecting in 1 s",
                      cli.stderr())

    def test_reconnect_says_when_messages_may_be_missing(self) -> None:
        # Each server keeps 2 messages per room: the last one the CLI saw ages out.
        data = tempfile.TemporaryDirectory(prefix="lanchat-data-")
        self.addCleanup(data.cleanup)
        first = self.start_server("--history", "2", data_dir=data.name)
        bob = self.connect(first, "bob")
        cli = self.cli(first)
        bob.say("lobby", "seen")
        cli.wait_line(contains("<bob> seen"))
        first.stop()
        bob.close()
        meanwhile = self.start_server("--history", "2", data_dir=data.name)
        cyd = self.connect(meanwhile, "cyd")
        cyd.join("lobby")
        for text in ("lost", "kept one", "kept two"):
            cyd.say("lobby", text)
        meanwhile.stop()
        cyd.close()
        self.start_server("--history", "2", data_dir=data.name, listen=f"127.0.0.1:{first.port}")
        cli.wait_line(contains("* reconnected to"), timeout=16 + WAIT)
        cli.wait_line(contains("<cyd> kept one"))
        cli.wait_line(contains("<cyd> kept two"))
        cli.send("/quit\n")
        self.assertEqual(cli.wait_exit(), 0, cli.stderr())
        self.assertIn("lanchat: [lobby] some messages may be missing", cli.stderr())
        self.assertFalse(any("lost" in line for line in cli.seen), cli.seen)


if __name__ == "__main__":
    unittest.main()
