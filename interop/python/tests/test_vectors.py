"""The shared test vectors in interop/vectors, run against the Python client."""

import json
import re
import unittest
from pathlib import Path
from typing import Any, Dict

from support import WAIT, fake_client, load_vectors

from lanchat import Client, ConnectionClosed, LanchatError
from lanchat.discovery import parse_beacon
from lanchat.protocol import (
    ERROR_CODES,
    NULL,
    EVENT_TYPES,
    ProtocolError,
    check_request,
    check_server_frame,
    decode_line,
    encode_frame,
    frame_kind,
    recipient_away,
    request_frame,
    validate,
)
from lanchat.render import format_event, format_reply


def _fields(request: Dict[str, Any]) -> Dict[str, Any]:
    """A canonical request's fields as Python passes them: a JSON null is NULL (None is absent)."""
    return {k: NULL if v is None else v for k, v in request.items() if k not in ("type", "id")}


def _call(client: Client, request: Dict[str, Any]) -> None:
    """Call the Client method named by the request's type with the request's fields."""
    fields = _fields(request)
    type_ = request["type"]
    if type_ == "hello":  # absent protocol/client must stay absent, not take defaults
        fields.setdefault("protocol", None)
        fields.setdefault("client", None)
    getattr(client, type_)(**fields)


class RetryAfter(unittest.TestCase):
    """An error frame's retry_after_ms (extension) reaches LanchatError.retry_after."""

    def test_retry_after_from_the_vectors(self) -> None:
        frames = {v["name"]: decode_line(v["line"].encode()) for v in load_vectors("server.jsonl")}
        with_hint = LanchatError.from_frame(frames["error_rate_limited_retry_after"])
        self.assertEqual(with_hint.code, "rate_limited")
        self.assertEqual(with_hint.retry_after, 0.5)
        self.assertIsNone(LanchatError.from_frame(frames["error_rate_limited"]).retry_after)
        welcome = frames["welcome_with_budgets"]
        self.assertEqual(welcome["limits"]["events_per_sec"], 2)


class RecipientAway(unittest.TestCase):
    """A dm's ok reply says when its recipient is away or busy (extension)."""

    def test_away_fields_from_the_vectors(self) -> None:
        frames = {v["name"]: decode_line(v["line"].encode()) for v in load_vectors("server.jsonl")}
        self.assertEqual(recipient_away(frames["ok_dm_away"]), ("bob", "lunch"))
        self.assertEqual(recipient_away(frames["ok_dm_away_no_text"]), ("bob", None))
        self.assertIsNone(recipient_away(frames["ok_dm"]))
        self.assertIsNone(recipient_away(frames["ok_say"]))
        self.assertEqual(format_reply(frames["ok_dm_away"]), ["* bob is away: lunch"])
        self.assertEqual(format_reply(frames["ok_dm"]), [])

    def test_malformed_away_fields_are_refused(self) -> None:
        for extra in ('"away":"yes"', '"away":true,"away_text":3'):
            line = '{"type":"ok","re":5,"cmd":"dm","id":"x","ts":1,"to":"bob",' + extra + "}"
            with self.assertRaises(ProtocolError, msg=extra) as caught:
                check_server_frame(decode_line(line.encode()))
            self.assertEqual(caught.exception.code, "bad_frame")


class ErrorCodes(unittest.TestCase):
    """ERROR_CODES names exactly the codes of PROTOCOL.md's error table."""

    def test_error_codes_match_the_document(self) -> None:
        doc = Path(__file__).resolve().parents[3] / "PROTOCOL.md"
        text = doc.read_text(encoding="utf-8")
        table = text.split("### Error codes", 1)[1].split("\n### ", 1)[0]
        documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))
        self.assertGreater(len(documented), 15)
        self.assertEqual(set(ERROR_CODES), documented)


class RequestVectors(unittest.TestCase):
    """requests.jsonl: the client's encoder builds exactly the canonical request."""

    def test_request_frame_encodes_each_vector(self) -> None:
        for vector in load_vectors("requests.jsonl"):
            with self.subTest(vector["name"]):
                request = vector["request"]
                fields = _fields(request)
                frame = request_frame(request["type"], id=request.get("id"), **fields)
                line = encode_frame(frame)
                self.assertTrue(line.endswith(b"\n"))
                self.assertNotIn(b"\n", line[:-1])
                self.assertEqual(decode_line(line), request)

    def test_client_methods_send_each_vector(self) -> None:
        for vector in load_vectors("requests.jsonl"):
            with self.subTest(vector["name"]):
                request = vector["request"]
                client, server = fake_client(self)
                _call(client, request)
                sent = decode_line(server.next_line())
                if request["type"] == "pong":
                    self.assertNotIn("id", sent)  # pong is never answered, so it has no id
                else:
                    self.assertIsInstance(sent.pop("id"), int)
                expected = {k: v for k, v in request.items() if k != "id"}
                self.assertEqual(sent, expected)

    def test_each_vector_line_passes_the_request_check(self) -> None:
        for vector in load_vectors("requests.jsonl"):
            with self.subTest(vector["name"]):
                frame = decode_line(vector["line"])
                check_request(frame)  # must not raise


class InvalidVectors(unittest.TestCase):
    """invalid.jsonl: the client-side checks give the same code (and re) as the server."""

    def test_each_invalid_line_gets_its_code(self) -> None:
        for vector in load_vectors("invalid.jsonl"):
            with self.subTest(vector["name"]):
                if "line_hex" in vector:
                    line: Any = bytes.fromhex(vector["line_hex"])
                else:
                    line = vector["line"].encode("utf-8")
                with self.assertRaises(ProtocolError) as caught:
                    check_request(decode_line(line))
                self.assertEqual(caught.exception.code, vector["code"])
                self.assertEqual(caught.exception.re, vector.get("re"))


class ServerVectors(unittest.TestCase):
    """server.jsonl and server_future.jsonl: every server frame is understood."""

    def test_each_server_frame_parses_and_renders(self) -> None:
        for vector in load_vectors("server.jsonl"):
            with self.subTest(vector["name"]):
                frame = decode_line(vector["line"])
                check_server_frame(frame)
                self.assertNotEqual(frame_kind(frame), "ignore")
                self.assertTrue(format_event(frame))
                format_reply(frame)  # must not raise

    def test_future_frames_are_classified_as_expected(self) -> None:
        for vector in load_vectors("server_future.jsonl"):
            with self.subTest(vector["name"]):
                frame = decode_line(vector["line"])
                check_server_frame(frame)
                self.assertEqual(frame_kind(frame), vector["expect"])
                self.assertTrue(format_event(frame))

    def test_a_client_reads_every_server_frame(self) -> None:
        """Stream all frames into a Client: events arrive in order, ping is answered, bye ends it."""
        vectors = load_vectors("server.jsonl") + load_vectors("server_future.jsonl")
        frames = [decode_line(v["line"]) for v in vectors]
        byes = [v["line"] for v, f in zip(vectors, frames) if f["type"] == "bye"]
        client, server = fake_client(self)
        for vector, frame in zip(vectors, frames):
            if frame["type"] != "bye":
                server.send_line(vector["line"].encode("utf-8") + b"\n")
        server.send_line(byes[-1].encode("utf-8") + b"\n")

        expected = [f for f in frames
                    if f["type"] in EVENT_TYPES and f["type"] != "ping"
                    or f["type"] in ("ok", "error", "welcome") and "re" not in f]  # unsolicited
        received = list(client.events(timeout=WAIT))
        self.assertEqual(received, expected)
        self.assertTrue(client.closed)
        self.assertIsNotNone(client.close_reason)
        self.assertEqual(client.close_reason.code, decode_line(byes[-1])["reason"])
        self.assertEqual(decode_line(server.next_line()), {"type": "pong"})
        with self.assertRaises(ConnectionClosed):
            client.next_event(timeout=0)


class DiscoveryVectors(unittest.TestCase):
    """discovery.jsonl: every beacon is read, with its ``tls_sha256`` when it has one (the
    fingerprint to pin), and a query is not taken for a beacon."""

    def test_each_datagram(self) -> None:
        for vector in load_vectors("discovery.jsonl"):
            with self.subTest(vector["name"]):
                datagram = vector["datagram"].encode("utf-8")
                server = parse_beacon(datagram, "192.0.2.7")
                if vector["name"].startswith("beacon"):
                    self.assertIsNotNone(server)
                    assert server is not None
                    self.assertEqual(server.address, ("192.0.2.7", server.port))
                    announced = json.loads(datagram).get("tls_sha256")
                    self.assertEqual(server.tls_sha256, announced)
                    self.assertEqual(server.cluster, json.loads(datagram).get("cluster"))
                    self.assertFalse(server.conflict)
                else:
                    self.assertIsNone(server)

    def test_tls_and_plain_beacons_are_both_present(self) -> None:
        names = {v["name"]: v for v in load_vectors("discovery.jsonl")}
        beacons = [n for n in names if n.startswith("beacon")]
        with_tls = [n for n in beacons if "tls_sha256" in names[n]["datagram"]]
        without = [n for n in beacons if n not in with_tls]
        self.assertTrue(with_tls and without, names)
        self.assertTrue(any("cluster" in names[n]["datagram"] for n in beacons), names)


class ValidateVectors(unittest.TestCase):
    """validate.jsonl: the client's validation helpers agree with the server."""

    def test_each_value(self) -> None:
        for vector in load_vectors("validate.jsonl"):
            with self.subTest(vector["name"]):
                expected = None if vector["ok"] else vector["code"]
                self.assertEqual(validate(vector["kind"], vector["value"]), expected)


class NameVectors(unittest.TestCase):
    """names.jsonl: the server's Unicode name rules, which a client need not check."""

    def test_never_refuses_what_the_server_accepts(self) -> None:
        for vector in load_vectors("names.jsonl"):
            if vector["kind"] in ("nick", "room") and vector["ok"]:
                with self.subTest(vector["name"]):
                    self.assertIsNone(validate(vector["kind"], vector["value"]))

    def test_hangul_fillers_are_refused(self) -> None:
        fillers = [v for v in load_vectors("names.jsonl") if "filler" in v["name"]]
        self.assertGreaterEqual(len(fillers), 4)
        for vector in fillers:
            with self.subTest(vector["name"]):
                self.assertEqual(validate(vector["kind"], vector["value"]), vector["code"])


if __name__ == "__main__":
    unittest.main()
