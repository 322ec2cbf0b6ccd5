"""The Client against a scripted fake server: reply matching, events, errors, closing."""

import json
import queue
import socket
import threading
import unittest
from typing import Any, Dict, List

from support import WAIT, fake_client

from lanchat import Client, ConnectionClosed, Frame, LanchatError, LanchatTimeout, discover
from lanchat.client import new_secret
from lanchat.discovery import Server, _Heard, _record, parse_beacon
from lanchat.protocol import decode_line, encode_frame


def silent(request: Frame) -> List[Frame]:
    """A fake server that answers nothing by itself."""
    return []


def line(frame: Frame) -> bytes:
    return encode_frame(frame)


class RequestTests(unittest.TestCase):
    def test_hello_returns_welcome_and_learns_limits(self) -> None:
        def answer(request: Frame) -> List[Frame]:
            return [{"type": "welcome", "re": request["id"], "protocol": 1, "server": "x/1",
                     "name": "n", "session": "s", "nick": "Ann", "rooms": ["lobby"], "motd": "",
                     "limits": {"max_line": 100}}]
        client, server = fake_client(self, answer)
        welcome = client.hello("ann")
        self.assertEqual(welcome["type"], "welcome")
        self.assertEqual(client.nickname, "Ann")
        self.assertEqual(client.max_line, 100)
        sent = decode_line(server.next_line())
        self.assertEqual(sent["protocol"], 1)
        self.assertEqual(sent["client"], "lanchat-py/0.1.0")
        self.assertNotIn("password", sent)
        with self.assertRaises(LanchatError) as caught:  # refused locally, never sent
            client.say("lobby", "x" * 100)
        self.assertEqual(caught.exception.code, "line_too_long")
        self.assertTrue(server.received.empty())

    def test_account_requests_carry_the_secret(self) -> None:
        client, server = fake_client(self)
        client.hello("ann", secret="correct horse")
        self.assertEqual(decode_line(server.next_line())["secret"], "correct horse")
        self.assertEqual(client.register("another secret")["cmd"], "register")
        self.assertEqual(decode_line(server.next_line()),
                         {"type": "register", "id": 2, "secret": "another secret"})
        client.nick("bob", secret="bob's secret")
        self.assertEqual(decode_line(server.next_line())["secret"], "bob's secret")
        client.unregister()
        self.assertEqual(decode_line(server.next_line()), {"type": "unregister", "id": 4})
        self.assertEqual(len(new_secret()), 24)
        self.assertNotEqual(new_secret(), new_secret())

    def test_ids_increase_and_replies_are_matched_by_re(self) -> None:
        client, server = fake_client(self, silent)
        results: "queue.Queue[Frame]" = queue.Queue()
        first = threading.Thread(target=lambda: results.put(client.who("a")))
        first.start()
        id1 = decode_line(server.next_line())["id"]
        second = threading.Thread(target=lambda: results.put(client.who("b")))
        second.start()
        id2 = decode_line(server.next_line())["id"]
        self.assertEqual(id2, id1 + 1)
        server.send_line(line({"type": "ok", "cmd": "who", "re": id2, "room": "b", "members": []}))
        server.send_line(line({"type": "ok", "cmd": "who", "re": id1, "room": "a", "members": []}))
        first.join(WAIT)
        second.join(WAIT)
        replies = {r["re"]: r["room"] for r in (results.get_nowait(), results.get_nowait())}
        self.assertEqual(replies, {id1: "a", id2: "b"})

    def test_all_rooms_follows_next_until_the_last_page(self) -> None:
        pages = {None: (["a", "b"], "b"), "b": (["c", "d"], "d"), "d": (["e"], None)}

        def answer(request: Frame) -> List[Frame]:
            names, next_ = pages[request.get("after")]
            reply: Frame = {"type": "ok", "cmd": "rooms", "re": request["id"],
                            "rooms": [{"name": n, "members": 1, "topic": ""} for n in names]}
            if next_ is not None:
                reply["next"] = next_
            return [reply]
        client, server = fake_client(self, answer)
        rooms = client.all_rooms()
        self.assertEqual([r["name"] for r in rooms], ["a", "b", "c", "d", "e"])
        sent = [decode_line(server.next_line()) for _ in range(3)]
        self.assertEqual([s.get("after") for s in sent], [None, "b", "d"])
        self.assertTrue(all("limit" not in s for s in sent))

    def test_error_reply_raises_with_code_and_message(self) -> None:
        def answer(request: Frame) -> List[Frame]:
            return [{"type": "error", "code": "not_in_room", "message": "not in rust",
                     "re": request["id"]}]
        client, _ = fake_client(self, answer)
        with self.assertRaises(LanchatError) as caught:
            client.say("rust", "hi")
        self.assertEqual(caught.exception.code, "not_in_room")
        self.assertEqual(caught.exception.message, "not in rust")
        self.assertEqual(caught.exception.frame["re"], 1)

    def test_replies_to_send_arrive_as_events(self) -> None:
        client, _ = fake_client(self)
        client.send("say", room="lobby", text="fire and forget")
        self.assertEqual(client.next_event(WAIT), {"type": "ok", "cmd": "say"})

    def test_timeout_then_late_reply_is_dropped(self) -> None:
        client, server = fake_client(self, silent)
        with self.assertRaises(LanchatTimeout) as caught:
            client.ping(timeout=0.05)
        self.assertEqual(caught.exception.code, "timeout")
        late = decode_line(server.next_line())["id"]
        server.send_line(line({"type": "ok", "cmd": "ping", "re": late}))
        server.send_line(line({"type": "join", "room": "lobby", "nick": "bob"}))
        self.assertEqual(client.next_event(WAIT)["type"], "join")  # the late ok was not an event

    def test_quit_returns_bye_and_closes(self) -> None:
        client, server = fake_client(self)
        bye = client.quit("done")
        self.assertEqual(bye["type"], "bye")
        self.assertEqual(decode_line(server.next_line())["reason"], "done")
        self.assertTrue(client.closed)
        self.assertEqual(client.close_reason.code, "quit")
        with self.assertRaises(ConnectionClosed):
            client.ping()


class EventTests(unittest.TestCase):
    def test_events_in_order_then_bye_ends_iteration(self) -> None:
        client, server = fake_client(self)
        frames = [{"type": "join", "room": "lobby", "nick": "bob"},
                  {"type": "message", "id": "m1", "ts": 1, "room": "lobby", "from": "bob",
                   "text": "hé \"quoted\"\nnext"},
                  {"type": "bye", "reason": "shutting_down", "message": "bye"}]
        for frame in frames:
            server.send_line(line(frame))
        self.assertEqual(list(client.events(timeout=WAIT)), frames[:2])
        self.assertEqual(client.close_reason.code, "shutting_down")
        self.assertEqual(client.bye, frames[2])

    def test_server_ping_is_answered_with_pong_and_not_delivered(self) -> None:
        client, server = fake_client(self)
        server.send_line(b'{"type":"ping"}\r\n\n')
        self.assertEqual(decode_line(server.next_line()), {"type": "pong"})
        with self.assertRaises(LanchatTimeout):
            client.next_event(timeout=0.05)

    def test_bad_and_overlong_lines_are_skipped(self) -> None:
        client, server = fake_client(self, max_incoming_line=64)
        server.send_line(b"not json\n" + b"[" * 200 + b"\n")
        server.send_line(line({"type": "leave", "room": "r", "nick": "bob"}))
        self.assertEqual(client.next_event(WAIT)["type"], "leave")

    def test_connection_lost_fails_waiting_requests(self) -> None:
        client, server = fake_client(self, silent)
        errors: "queue.Queue[BaseException]" = queue.Queue()

        def call() -> None:
            try:
                client.ping()
            except LanchatError as exc:
                errors.put(exc)
        waiter = threading.Thread(target=call)
        waiter.start()
        server.next_line()
        server.hang_up()
        waiter.join(WAIT)
        error = errors.get(timeout=WAIT)
        self.assertIsInstance(error, ConnectionClosed)
        self.assertEqual(error.code, "connection_lost")
        self.assertTrue(client.wait_closed(WAIT))

    def test_callback_receives_events_and_close(self) -> None:
        events: "queue.Queue[Frame]" = queue.Queue()
        closed: "queue.Queue[ConnectionClosed]" = queue.Queue()
        _, server = fake_client(self, on_event=events.put, on_close=closed.put)
        server.send_line(line({"type": "nick", "old": "a", "new": "b"}))
        self.assertEqual(events.get(timeout=WAIT)["new"], "b")
        server.hang_up()
        self.assertEqual(closed.get(timeout=WAIT).code, "connection_lost")

    def test_full_buffer_drops_the_oldest(self) -> None:
        client, server = fake_client(self, max_events=2)
        for n in range(3):
            server.send_line(line({"type": "join", "room": f"r{n}", "nick": "x"}))
        server.send_line(line({"type": "bye", "reason": "quit", "message": ""}))
        self.assertTrue(client.wait_closed(WAIT))
        self.assertEqual([e["room"] for e in client.events()], ["r1", "r2"])
        self.assertEqual(client.dropped_events, 1)

    def test_context_manager_closes(self) -> None:
        mine, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        with Client(timeout=WAIT).attach(mine) as client:
            pass
        self.assertTrue(client.closed)
        self.assertEqual(client.close_reason.code, "closed")


class DiscoveryUnitTests(unittest.TestCase):
    BEACON = {"type": "beacon", "protocol": 1, "server": "lanchat/0.1.0", "name": "office",
              "instance": "i-1", "port": 7878, "users": 3, "rooms": 2, "auth": False, "state": "up"}

    def test_parse_beacon(self) -> None:
        server = parse_beacon(json.dumps(self.BEACON).encode(), "127.0.0.1")
        self.assertIsNotNone(server)
        self.assertEqual(server.address, ("127.0.0.1", 7878))
        self.assertEqual((server.name, server.users, server.rooms, server.auth, server.state),
                         ("office", 3, 2, False, "up"))
        for bad in (b"", b"{", b"[]", b'{"type":"discover","protocol":1}', b"\xff",
                    json.dumps({**self.BEACON, "port": "x"}).encode(), b" " * 1300):
            self.assertIsNone(parse_beacon(bad, "127.0.0.1"), bad[:40])
        # PROTOCOL.md, "Incomplete beacons": no instance, no port, or no known state.
        for name in ("instance", "port", "state"):
            beacon = {k: v for k, v in self.BEACON.items() if k != name}
            self.assertIsNone(parse_beacon(json.dumps(beacon).encode(), "127.0.0.1"), name)
        for state in ("draining", None, 1):
            beacon = json.dumps({**self.BEACON, "state": state}).encode()
            self.assertIsNone(parse_beacon(beacon, "127.0.0.1"), state)

    def test_one_address_per_instance(self) -> None:
        """PROTOCOL.md, "One server, several addresses": first heard, unless loopback comes."""
        def heard(host: str, port: int, users: int) -> Server:
            beacon = {**self.BEACON, "port": port, "users": users}
            server = parse_beacon(json.dumps(beacon).encode(), host)
            assert server is not None
            return server

        found: Dict[str, _Heard] = {}
        _record(found, heard("192.0.2.17", 7000, 1))
        _record(found, heard("198.51.100.4", 7001, 2))
        server = found["i-1"].server()
        self.assertEqual((server.address, server.users), (("192.0.2.17", 7000), 2))
        _record(found, heard("127.0.0.1", 7002, 3))
        _record(found, heard("192.0.2.17", 7000, 4))
        server = found["i-1"].server()
        self.assertEqual((server.address, server.users), (("127.0.0.1", 7002), 4))
        self.assertEqual((server.tls_sha256, server.conflict), (None, False))

    def test_tls_sha256_is_read_and_normalised(self) -> None:
        hex_upper = "AB" * 32
        server = parse_beacon(json.dumps({**self.BEACON, "tls_sha256": hex_upper}).encode(),
                              "127.0.0.1")
        assert server is not None
        self.assertEqual(server.tls_sha256, hex_upper.lower())
        self.assertFalse(server.conflict)
        for bad in ("ab" * 31, "ab" * 33, "zz" * 32, 12, None, "0x" + "ab" * 31):
            beacon = json.dumps({**self.BEACON, "tls_sha256": bad}).encode()
            server = parse_beacon(beacon, "127.0.0.1")
            assert server is not None, bad  # still listed, but nothing to pin
            self.assertIsNone(server.tls_sha256, bad)

    def test_each_address_keeps_its_own_fingerprint_and_disagreement_is_a_conflict(self) -> None:
        """A forged beacon for a known instance must not lend its pin to the real address."""
        def heard(host: str, fingerprint: Any) -> Server:
            beacon = {**self.BEACON, "tls_sha256": fingerprint}
            server = parse_beacon(json.dumps(beacon).encode(), host)
            assert server is not None
            return server

        real, forged = "11" * 32, "22" * 32
        found: Dict[str, _Heard] = {}
        _record(found, heard("192.0.2.17", real))
        _record(found, heard("192.0.2.17", real))
        self.assertEqual((found["i-1"].server().tls_sha256, found["i-1"].server().conflict),
                         (real, False))
        _record(found, heard("192.0.2.66", forged))  # another address, same instance
        server = found["i-1"].server()
        self.assertEqual((server.host, server.tls_sha256, server.conflict),
                         ("192.0.2.17", real, True))
        # A forged loopback beacon would be preferred as the address: it brings its own pin
        # and the conflict flag, never the real address's pin.
        _record(found, heard("127.0.0.1", forged))
        server = found["i-1"].server()
        self.assertEqual((server.host, server.tls_sha256, server.conflict),
                         ("127.0.0.1", forged, True))
        # One address saying TLS and another saying none is a conflict too (a downgrade).
        found = {}
        _record(found, heard("192.0.2.17", real))
        _record(found, heard("192.0.2.66", None))
        self.assertTrue(found["i-1"].server().conflict)

    def test_unicast_discover_against_a_fake_responder(self) -> None:
        """A loopback UDP socket answering queries like a server would."""
        responder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(responder.close)
        responder.bind(("127.0.0.1", 0))
        port = responder.getsockname()[1]

        def answer() -> None:
            query, source = responder.recvfrom(2048)
            if json.loads(query) == {"type": "discover", "protocol": 1}:
                responder.sendto(b"garbage", source)
                responder.sendto(json.dumps(self.BEACON).encode(), source)
                responder.sendto(json.dumps({**self.BEACON, "users": 4}).encode(), source)
        threading.Thread(target=answer, daemon=True).start()
        self.assertEqual(discover(timeout=0.1, port=port, hosts=["127.0.0.1"], broadcast=False,
                                  query=False), [])  # sends nothing
        found = discover(timeout=0.5, port=port, hosts=["127.0.0.1"], broadcast=False)
        self.assertEqual(len(found), 1)  # de-duplicated by instance, the latest wins
        self.assertEqual((found[0].host, found[0].port, found[0].users), ("127.0.0.1", 7878, 4))


if __name__ == "__main__":
    unittest.main()
