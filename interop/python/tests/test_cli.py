"""The command line's pure parts: addresses, input commands, rendering, argument errors."""

import datetime
import os
import queue
import subprocess
import sys
import threading
import unittest

from support import WAIT, python_env

from lanchat import NULL, parse_address
from lanchat.cli import STDIN_LINE_LIMIT, _read_stdin, backoff, parse_command
from lanchat.render import format_event, format_reply, format_time


class AddressTests(unittest.TestCase):
    def test_forms(self) -> None:
        self.assertEqual(parse_address("example"), ("example", 7878))
        self.assertEqual(parse_address("127.0.0.1:9000"), ("127.0.0.1", 9000))
        self.assertEqual(parse_address("[::1]:9000"), ("::1", 9000))
        self.assertEqual(parse_address("::1"), ("::1", 7878))

    def test_errors(self) -> None:
        for bad in ("", ":80", "host:", "host:0", "host:65536", "host:http", "[::1", "[::1]x"):
            with self.subTest(bad), self.assertRaises(ValueError):
                parse_address(bad)


class CommandTests(unittest.TestCase):
    def test_plain_text_is_said_in_the_current_room(self) -> None:
        self.assertEqual(parse_command("hi there", "lobby"),
                         ("say", {"room": "lobby", "text": "hi there"}))
        self.assertEqual(parse_command("//not a command", "lobby"),
                         ("say", {"room": "lobby", "text": "/not a command"}))

    def test_commands(self) -> None:
        cases = {
            "/join rust": ("join", {"room": "rust", "key": None}),
            "/join vault s3cret": ("join", {"room": "vault", "key": "s3cret"}),
            "/mode": ("mode", {"room": "lobby"}),
            "/mode +i -t +k k3y": ("mode", {"room": "lobby", "invite_only": True,
                                            "topic_lock": False, "key": "k3y"}),
            "/mode -k": ("mode", {"room": "lobby", "key": NULL}),
            "/invite bob": ("invite", {"room": "lobby", "nick": "bob"}),
            "/op bob": ("op", {"room": "lobby", "nick": "bob"}),
            "/kick bob go away": ("kick", {"room": "lobby", "nick": "bob", "reason": "go away"}),
            "/kick bob": ("kick", {"room": "lobby", "nick": "bob", "reason": None}),
            "/register tWv2x9Qm4bLk7rZp": ("register", {"secret": "tWv2x9Qm4bLk7rZp"}),
            "/unregister": ("unregister", {}),
            "/leave": ("leave", {"room": "lobby"}),
            "/leave rust": ("leave", {"room": "rust"}),
            "/msg bob hello there": ("dm", {"to": "bob", "text": "hello there"}),
            "/me waves": ("say", {"room": "lobby", "text": "/me waves"}),
            "/me  waves  twice": ("say", {"room": "lobby", "text": "/me waves  twice"}),
            "/nick annie": ("nick", {"nick": "annie"}),
            "/status away at lunch": ("status", {"status": "away", "text": "at lunch"}),
            "/status online": ("status", {"status": "online", "text": None}),
            "/topic": ("topic", {"room": "lobby", "topic": None}),
            "/topic new topic": ("topic", {"room": "lobby", "topic": "new topic"}),
            "/who": ("who", {"room": "lobby"}),
            "/rooms": ("rooms", {"after": None}),
            "/rooms rust": ("rooms", {"after": "rust"}),
            "/history 5": ("history", {"room": "lobby", "limit": 5}),
            "/ping": ("ping", {}),
            "/quit bye all": ("quit", {"reason": "bye all"}),
        }
        for line, expected in cases.items():
            with self.subTest(line):
                self.assertEqual(parse_command(line, "lobby"), expected)

    def test_errors(self) -> None:
        for line, room in (("/frobnicate", "lobby"), ("/join", "lobby"), ("/msg bob", "lobby"),
                           ("/history many", "lobby"), ("hello", None), ("/who", None),
                           ("/me", "lobby"), ("/me waves", None), ("/mode +x", "lobby"),
                           ("/mode +k", "lobby"), ("/invite", "lobby"), ("/kick", "lobby"),
                           ("/register", "lobby")):
            with self.subTest(line), self.assertRaises(ValueError):
                parse_command(line, room)


class RenderTests(unittest.TestCase):
    def test_events_are_one_line(self) -> None:
        line = format_event({"type": "message", "id": "x", "ts": 0, "room": "lobby",
                             "from": "bob", "text": "two\nlines\x1b[31m"})
        self.assertTrue(line.endswith("[lobby] <bob> two\\nlines\\x1b[31m"), line)
        self.assertEqual(format_event({"type": "nick", "old": "a", "new": "b"}, now_ms=0),
                         f"{format_time(0)} * a is now known as b")
        self.assertEqual(format_event({"type": "reaction", "emoji": "+1"}), "* reaction emoji=+1")

    def test_room_events_are_stamped_like_messages(self) -> None:
        ts = 1763769600123
        stamp = datetime.datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S")
        self.assertEqual(format_event({"type": "join", "room": "lobby", "nick": "cyd"}, now_ms=ts),
                         f"{stamp} [lobby] * cyd joined")
        self.assertEqual(format_event({"type": "leave", "room": "rust", "nick": "bob"}, now_ms=ts),
                         f"{stamp} [rust] * bob left")
        self.assertEqual(format_event({"type": "message", "id": "x", "ts": ts, "room": "lobby",
                                       "from": "cyd", "text": "hi"}, now_ms=0),
                         f"{stamp} [lobby] <cyd> hi")  # a message keeps the server's time
        self.assertRegex(format_event({"type": "join", "room": "lobby", "nick": "cyd"}),
                         r"^\d\d:\d\d:\d\d \[lobby\] \* cyd joined$")

    def test_me_is_shown_as_an_action(self) -> None:
        event = {"type": "message", "id": "x", "ts": 0, "room": "lobby", "from": "bob"}
        self.assertEqual(format_event({**event, "text": "/me waves"}),
                         f"{format_time(0)} [lobby] * bob waves")
        self.assertEqual(format_event({**event, "text": "/method"}),
                         f"{format_time(0)} [lobby] <bob> /method")

    def test_replies(self) -> None:
        who = {"type": "ok", "cmd": "who", "room": "lobby",
               "members": [{"nick": "ann", "status": "online"},
                           {"nick": "bob", "status": "away", "text": "lunch"}]}
        self.assertEqual(format_reply(who), ["[lobby] members: ann, bob (away: lunch)"])
        self.assertEqual(format_reply({"type": "ok", "cmd": "say", "id": "x", "ts": 1}), [])
        page = {"type": "ok", "cmd": "rooms", "next": "rust",
                "rooms": [{"name": "rust", "members": 2, "topic": ""}]}
        self.assertEqual(format_reply(page),
                         ["* rust (2 members)", "* more rooms follow: /rooms rust"])


class StdinReaderTests(unittest.TestCase):
    """The stdin reader reads the descriptor itself (never sys.stdin's locked buffer)."""

    def read_all(self, data: bytes) -> list:
        read_fd, write_fd = os.pipe()
        inbox: "queue.Queue" = queue.Queue()
        thread = threading.Thread(target=_read_stdin, args=(read_fd, inbox), daemon=True)
        thread.start()
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
        thread.join(WAIT)
        os.close(read_fd)
        self.assertFalse(thread.is_alive())
        items = []
        while not inbox.empty():
            items.append(inbox.get_nowait())
        return items

    def test_lines_crlf_and_a_last_line_without_lf(self) -> None:
        self.assertEqual(self.read_all("one\r\ntwo ü\n\nlast".encode()),
                         [("line", "one"), ("line", "two ü"), ("line", ""), ("line", "last"),
                          ("eof", "")])

    def test_an_overlong_line_is_skipped(self) -> None:
        items = self.read_all(b"a\n" + b"x" * (STDIN_LINE_LIMIT + 10) + b"\nb\n")
        self.assertEqual(items[0], ("line", "a"))
        self.assertEqual(items[1][0], "error")
        self.assertEqual(items[2:], [("line", "b"), ("eof", "")])


class BackoffTests(unittest.TestCase):
    def test_doubles_up_to_30_seconds(self) -> None:
        self.assertEqual([backoff(n) for n in range(8)], [1, 2, 4, 8, 16, 30, 30, 30])
        self.assertEqual(backoff(1000), 30)


class ArgumentTests(unittest.TestCase):
    def test_bad_arguments_exit_2_with_one_line(self) -> None:
        for args in (["127.0.0.1:1"], ["127.0.0.1:99999", "--nick", "x"], ["--nick", "x"],
                     ["127.0.0.1", "--nick", "x", "--password-file", "/nonexistent/pw"],
                     ["127.0.0.1", "--nick", "x", "--tls-fingerprint", "ab" * 31],
                     ["127.0.0.1", "--nick", "x", "--tls-fingerprint", "zz" * 32],
                     ["/tmp/lanchat.sock", "--nick", "x", "--tls-fingerprint", "ab" * 32],
                     ["127.0.0.1", "--nick", "x", "--discover-via", "127.0.0.1"],
                     ["127.0.0.1", "--nick", "x", "--reconnect", "-1"],
                     ["127.0.0.1", "--nick", "x", "--reconnect", "many"]):
            with self.subTest(args):
                result = subprocess.run([sys.executable, "-m", "lanchat", *args],
                                        env=python_env(), capture_output=True,
                                        stdin=subprocess.DEVNULL, timeout=WAIT * 2)
                self.assertEqual(result.returncode, 2)
                self.assertEqual(len(result.stderr.decode().strip().splitlines()), 1,
                                 result.stderr.decode())


if __name__ == "__main__":
    unittest.main()
