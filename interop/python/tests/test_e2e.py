"""End to end against the real lanchat-server binary, on 127.0.0.1 only.

The server comes from $LANCHAT_SERVER_BIN or <repo>/target/debug/lanchat-server;
when it is missing every test here fails and says to run
`cargo build --workspace --bins`.
"""

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, Callable, Tuple

from support import EXAMPLES, WAIT, ServerProcess, free_udp_port, python_env

from lanchat import NULL, Client, ConnectionClosed, Frame, LanchatError, discover
from lanchat.client import new_secret


def matching(type_: str, **fields: Any) -> Callable[[Frame], bool]:
    """A predicate for an event of ``type_`` whose fields have the given values."""
    return lambda e: e.get("type") == type_ and all(e.get(k) == v for k, v in fields.items())


class ServerTestCase(unittest.TestCase):
    """Starts a fresh server for each test and closes every client it made."""

    server_args: Tuple[str, ...] = ("--no-announce",)

    def setUp(self) -> None:
        self.server = ServerProcess(*self.server_args)
        self.addCleanup(self.server.stop)

    def connect(self, nick: str) -> Client:
        """A registered client (the server puts it in lobby)."""
        client = Client(timeout=WAIT).connect(self.server.host, self.server.port)
        self.addCleanup(client.close)
        client.hello(nick)
        return client

    def expect(self, client: Client, type_: str, **fields: Any) -> Frame:
        """The next event of ``type_`` with those fields (others are skipped), within WAIT."""
        return client.wait_for(matching(type_, **fields), WAIT)

    def run_python(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """Run a Python program with lanchat importable; fails the test on a hang."""
        return subprocess.run([sys.executable, *args], input=stdin.encode(), env=python_env(),
                              capture_output=True, timeout=WAIT * 4)


class ChatTests(ServerTestCase):
    def test_hello_then_say_reaches_the_other_member(self) -> None:
        ann = self.connect("ann")
        welcome = ann.welcome
        self.assertEqual((welcome["protocol"], welcome["nick"], welcome["rooms"]), (1, "ann", ["lobby"]))
        self.assertIn("max_line", welcome["limits"])
        bob = self.connect("bob")
        self.expect(ann, "join", room="lobby", nick="bob")
        text = 'héllo 日本 👋 "quoted" \\ back\nslash'
        ok = ann.say("lobby", text)
        self.assertEqual((ok["type"], ok["cmd"]), ("ok", "say"))
        message = self.expect(bob, "message", room="lobby")
        self.assertEqual((message["from"], message["text"], message["id"], message["ts"]),
                         ("ann", text, ok["id"], ok["ts"]))

    def test_hello_without_autojoin_is_in_no_room(self) -> None:
        ann = self.connect("ann")
        bot = Client(timeout=WAIT).connect(self.server.host, self.server.port)
        self.addCleanup(bot.close)
        self.assertEqual(bot.hello("deploybot", autojoin=False)["rooms"], [])
        who = ann.who("lobby")
        self.assertEqual([m["nick"] for m in who["members"]], ["ann"])
        bot.join("lobby")
        self.expect(ann, "join", room="lobby", nick="deploybot")

    def test_join_room_and_talk_there(self) -> None:
        ann, bob = self.connect("ann"), self.connect("bob")
        joined = ann.join("rust")
        self.assertEqual(joined["room"], "rust")
        self.assertEqual([m["nick"] for m in joined["members"]], ["ann"])
        bob.join("rust")
        self.expect(ann, "join", room="rust", nick="bob")
        bob.say("rust", "borrow checker")
        self.assertEqual(self.expect(ann, "message", room="rust")["text"], "borrow checker")
        bob.leave("rust")
        self.expect(ann, "leave", room="rust", nick="bob")

    def test_dm(self) -> None:
        ann, bob = self.connect("ann"), self.connect("bob")
        ok = ann.dm("bob", "psst")
        direct = self.expect(bob, "direct")
        self.assertEqual((direct["from"], direct["to"], direct["text"], direct["id"]),
                         ("ann", "bob", "psst", ok["id"]))

    def test_nick_change_event(self) -> None:
        ann, bob = self.connect("ann"), self.connect("bob")
        self.assertEqual(bob.nick("bobby")["nick"], "bobby")
        self.assertEqual(bob.nickname, "bobby")
        self.expect(ann, "nick", old="bob", new="bobby")

    def test_status_and_topic_events(self) -> None:
        ann, bob = self.connect("ann"), self.connect("bob")
        bob.status("away", "lunch")
        self.expect(ann, "presence", nick="bob", status="away", text="lunch")
        ann.topic("lobby", "welcome all")
        self.expect(bob, "topic", room="lobby", topic="welcome all", by="ann")
        self.assertEqual(bob.topic("lobby")["topic"], "welcome all")

    def test_error_codes_raise_lanchat_error(self) -> None:
        ann = self.connect("ann")
        second = Client(timeout=WAIT).connect(self.server.host, self.server.port)
        self.addCleanup(second.close)
        cases = [
            (lambda: second.hello("ANN"), "nick_taken"),  # nicks compare case-insensitively
            (lambda: second.hello("no spaces"), "nick_invalid"),
            (lambda: ann.say("elsewhere", "hi"), "not_in_room"),
            (lambda: ann.dm("nobody", "hi"), "no_such_nick"),
            (lambda: ann.join("bad room"), "room_invalid"),
            (lambda: ann.say("lobby", "ding\a"), "text_invalid"),
            (lambda: ann.hello("ann"), "already_registered"),
        ]
        for call, code in cases:
            with self.subTest(code):
                with self.assertRaises(LanchatError) as caught:
                    call()
                self.assertEqual(caught.exception.code, code)
                self.assertTrue(caught.exception.message)
        self.assertEqual(second.hello("cyd")["nick"], "cyd")  # still open after nick_taken

    def test_history_returns_what_was_said(self) -> None:
        ann = self.connect("ann")
        ids = [ann.say("lobby", f"message {n}")["id"] for n in range(3)]
        history = ann.history("lobby")
        self.assertEqual([m["text"] for m in history["messages"]],
                         ["message 0", "message 1", "message 2"])
        self.assertEqual([m["id"] for m in history["messages"]], ids)
        self.assertEqual([m["id"] for m in ann.history("lobby", after=ids[0])["messages"]], ids[1:])
        self.assertEqual([m["id"] for m in ann.history("lobby", before=ids[2], limit=1)["messages"]],
                         ids[1:2])
        self.assertEqual(ann.history("nowhere")["messages"], [])

    def test_rooms_and_who(self) -> None:
        ann, bob = self.connect("ann"), self.connect("bob")
        ann.join("rust")
        ann.topic("rust", "crabs")
        rooms = {r["name"]: r for r in ann.rooms()["rooms"]}
        self.assertEqual(rooms["lobby"]["members"], 2)
        self.assertEqual((rooms["rust"]["members"], rooms["rust"]["topic"]), (1, "crabs"))
        who = bob.who("lobby")
        self.assertEqual(sorted(m["nick"] for m in who["members"]), ["ann", "bob"])
        # Ann made the room: its first operator.
        self.assertEqual(bob.who("rust")["members"],
                         [{"nick": "ann", "status": "online", "op": True}])
        self.assertEqual(ann.ping()["cmd"], "ping")

    def test_quit_tells_the_others_and_ends_the_client(self) -> None:
        ann, bob = self.connect("ann"), self.connect("bob")
        bye = bob.quit("home time")
        self.assertEqual(bye["reason"], "quit")
        self.assertTrue(bob.closed)
        self.assertEqual(bob.close_reason.code, "quit")
        self.expect(ann, "quit", nick="bob", reason="home time")
        with self.assertRaises(ConnectionClosed):
            bob.say("lobby", "too late")

    def test_server_shutdown_ends_event_iteration(self) -> None:
        ann = self.connect("ann")
        self.server.process.terminate()
        self.assertEqual(list(ann.events(timeout=WAIT)), [])
        self.assertEqual(ann.close_reason.code, "shutting_down")


class AccountTests(ServerTestCase):
    """Registered nicks (PROTOCOL.md, Accounts) against the real server."""

    def test_a_registered_nick_needs_its_secret_after_its_owner_leaves(self) -> None:
        ann = self.connect("ann")
        secret = new_secret()
        reply = ann.register(secret)
        self.assertEqual((reply["cmd"], reply["nick"], reply["persistent"]),
                         ("register", "ann", False))
        ann.quit()
        other = Client(timeout=WAIT).connect(self.server.host, self.server.port)
        self.addCleanup(other.close)
        for attempt in (lambda: other.hello("ann"),
                        lambda: other.hello("ANN", secret="not the secret")):
            with self.assertRaises(LanchatError) as caught:
                attempt()
            self.assertEqual(caught.exception.code, "nick_registered")
        self.assertEqual(other.hello("ann", secret=secret)["nick"], "ann")
        reply = other.unregister()
        self.assertEqual((reply["cmd"], reply["nick"]), ("unregister", "ann"))

    def test_the_secret_takes_over_a_live_session(self) -> None:
        old = self.connect("ann")
        secret = new_secret()
        old.register(secret)
        bob = self.connect("bob")
        new = Client(timeout=WAIT).connect(self.server.host, self.server.port)
        self.addCleanup(new.close)
        self.assertEqual(new.hello("ann", secret=secret)["nick"], "ann")
        self.expect(bob, "quit", nick="ann", reason="replaced")
        with self.assertRaises(ConnectionClosed) as closed:
            old.wait_for(lambda e: False, WAIT)
        self.assertEqual(closed.exception.code, "replaced")

    def test_malformed_secrets_are_bad_frames(self) -> None:
        ann = self.connect("ann")
        with self.assertRaises(LanchatError) as caught:
            ann.register("short")
        self.assertEqual(caught.exception.code, "bad_frame")


class PrivateRoomTests(ServerTestCase):
    """Private rooms (extension): invisible and unreadable to non-members, usable by members."""

    def test_a_private_room_is_hidden_from_non_members_and_works_for_members(self) -> None:
        ann, bob, cy = self.connect("ann"), self.connect("bob"), self.connect("cy")
        self.assertTrue(ann.join("Hideout")["members"][0]["op"])
        modes = ann.mode("hideout", invite_only=True, key="s3cret")
        self.assertEqual((modes["invite_only"], modes["has_key"]), (True, True))
        self.assertNotIn("key", modes)
        ann.topic("hideout", "the plan")
        ann.say("hideout", "meet at noon")
        for outsider in (bob, cy):
            self.assertNotIn("Hideout", [r["name"] for r in outsider.rooms()["rooms"]])
            self.assertEqual(outsider.who("hideout")["members"], [])
            self.assertEqual(outsider.topic("hideout")["topic"], "")
            self.assertEqual(outsider.history("hideout")["messages"], [])
        with self.assertRaises(LanchatError) as refused:
            bob.join("hideout", key="s3cret")
        self.assertEqual(refused.exception.code, "not_invited")
        ann.invite("hideout", "bob")
        self.expect(bob, "invite", room="Hideout", by="ann")
        joined = bob.join("hideout")
        self.assertEqual(joined["topic"], "the plan")
        self.assertEqual([m["text"] for m in bob.history("hideout")["messages"]], ["meet at noon"])
        with self.assertRaises(LanchatError) as refused:
            bob.kick("hideout", "ann")
        self.assertEqual(refused.exception.code, "not_operator")
        ann.mode("hideout", invite_only=False, key=NULL)
        self.expect(bob, "mode", room="Hideout", invite_only=False, has_key=False)
        self.assertIn("Hideout", [r["name"] for r in cy.rooms()["rooms"]])
        ann.kick("hideout", "bob", reason="bye")
        self.expect(bob, "leave", room="Hideout", nick="bob", kicked_by="ann", reason="bye")


class KeepaliveTests(ServerTestCase):
    server_args = ("--no-announce", "--ping-interval", "1")

    def test_server_ping_is_answered(self) -> None:
        ann = self.connect("ann")
        # Silent for more than twice the interval: without a pong the server would
        # send bye ping_timeout after 2 s.
        self.assertFalse(ann.wait_closed(3.5), f"closed: {ann.close_reason}")
        self.assertEqual(ann.ping()["cmd"], "ping")


class ProgramTests(ServerTestCase):
    def test_cli_sends_stdin_lines(self) -> None:
        ann = self.connect("ann")
        address = f"{self.server.host}:{self.server.port}"
        result = self.run_python("-m", "lanchat", address, "--nick", "carl",
                                 stdin="hello from the cli\n/msg ann über psst\n")
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        message = self.expect(ann, "message", **{"from": "carl"})
        self.assertEqual((message["room"], message["text"]), ("lobby", "hello from the cli"))
        self.assertEqual(self.expect(ann, "direct", **{"from": "carl"})["text"], "über psst")
        self.expect(ann, "quit", nick="carl")

    def test_cli_json_output_and_room(self) -> None:
        ann = self.connect("ann")
        ann.join("rust")
        address = f"{self.server.host}:{self.server.port}"
        result = self.run_python("-m", "lanchat", address, "--nick", "dee", "--room", "rust",
                                 "--json", stdin="/who\nhi rust\n")
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertEqual(self.expect(ann, "message", **{"from": "dee"})["room"], "rust")
        lines = result.stdout.decode().splitlines()
        self.assertTrue(lines[0].startswith('{"type":"welcome"'), lines)
        self.assertTrue(any('"cmd":"who"' in line and '"ann"' in line for line in lines), lines)

    def test_echo_bot_answers(self) -> None:
        ann = self.connect("ann")
        bot = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "echo_bot.py"),
             f"{self.server.host}:{self.server.port}", "echobot"],
            env=python_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        assert bot.stderr is not None
        self.addCleanup(bot.stderr.close)
        self.addCleanup(bot.wait, WAIT)
        self.addCleanup(bot.kill)
        self.expect(ann, "join", room="lobby", nick="echobot")
        ann.say("lobby", "!ping")
        self.assertEqual(self.expect(ann, "message", **{"from": "echobot"})["text"], "pong")
        ann.say("lobby", "!time")
        self.assertRegex(self.expect(ann, "message", **{"from": "echobot"})["text"],
                         r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        ann.dm("echobot", "!ping")
        self.assertEqual(self.expect(ann, "direct", **{"from": "echobot"})["text"], "pong")

    def test_websocket_example_chats_with_a_tcp_client(self) -> None:
        """examples/ws_client.py over the server's WebSocket (/ws), with a TCP member."""
        ann = self.connect("ann")
        ann.join("rust")
        client = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "ws_client.py"),
             f"{self.server.host}:{self.server.port}", "webby", "rust", "--say", "hi über ws"],
            env=python_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        assert client.stdout is not None and client.stderr is not None
        self.addCleanup(client.stderr.close)
        self.addCleanup(client.stdout.close)
        self.addCleanup(client.wait, WAIT)
        self.addCleanup(client.kill)
        self.expect(ann, "join", room="rust", nick="webby")
        said = self.expect(ann, "message", **{"from": "webby"})
        self.assertEqual((said["room"], said["text"]), ("rust", "hi über ws"))
        ann.say("rust", "hello, browser")
        lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line.decode()) for line in client.stdout],
                         daemon=True).start()
        seen = []
        while "[rust] <ann> hello, browser\n" not in seen:
            try:
                seen.append(lines.get(timeout=WAIT))
            except queue.Empty:
                self.fail(f"ws_client.py did not print ann's message; printed {seen}")
        self.assertTrue(seen[0].startswith('{"type": "welcome"'), seen)
        ann.quit()
        client.kill()


class UnixSocketTests(ServerTestCase):
    def setUp(self) -> None:
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.path = os.path.join(directory.name, "lanchat.sock")
        self.server_args = ("--no-announce", "--unix", self.path)
        super().setUp()

    def test_client_and_cli_over_a_unix_socket(self) -> None:
        ann = Client(timeout=WAIT).connect_unix(self.path)
        self.addCleanup(ann.close)
        ann.hello("ann")
        result = self.run_python("-m", "lanchat", self.path, "--nick", "unixy", stdin="over unix\n")
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertEqual(self.expect(ann, "message", **{"from": "unixy"})["text"], "over unix")


class DiscoveryTests(unittest.TestCase):
    """A server announcing on loopback only (listener 127.0.0.1 -> 127.255.255.255)."""

    def setUp(self) -> None:
        self.udp_port = free_udp_port()
        self.server = ServerProcess("--announce-port", str(self.udp_port),
                                    "--announce-interval", "1", "--name", "py-e2e")
        self.addCleanup(self.server.stop)

    def check(self, servers: list) -> None:
        ours = [s for s in servers if s.port == self.server.port]
        self.assertEqual(len(ours), 1, servers)
        found = ours[0]
        self.assertEqual((found.host, found.name, found.state, found.auth, found.protocol),
                         ("127.0.0.1", "py-e2e", "up", False, 1))
        self.assertTrue(found.instance)
        self.assertTrue(found.server.startswith("lanchat/"))

    def test_unicast_discover(self) -> None:
        start = time.monotonic()
        self.check(discover(timeout=1.0, port=self.udp_port, hosts=["127.0.0.1"], broadcast=False))
        self.assertLess(time.monotonic() - start, 2.0)

    def test_loopback_broadcast_discover(self) -> None:
        self.check(discover(timeout=1.5, port=self.udp_port, broadcast=["127.255.255.255"]))

    def test_passive_beacons(self) -> None:
        """Nothing sent: the server's own beacons (every second) are heard."""
        self.check(discover(timeout=2.5, port=self.udp_port, broadcast=["127.255.255.255"],
                            query=False))

    def test_both_ways_at_once(self) -> None:
        self.check(discover(timeout=1.0, port=self.udp_port, hosts=["127.0.0.1"],
                            broadcast=["127.255.255.255"]))

    def test_users_count_follows_connects(self) -> None:
        client = Client(timeout=WAIT).connect(self.server.host, self.server.port)
        self.addCleanup(client.close)
        client.hello("ann")
        # Only the answer to the query: a periodic beacon built before hello could
        # arrive later in the window and still say 0.
        servers = discover(timeout=0.5, port=self.udp_port, hosts=["127.0.0.1"],
                           broadcast=False, listen=False)
        self.check(servers)
        self.assertEqual(servers[0].users, 1)

if __name__ == "__main__":
    unittest.main()
