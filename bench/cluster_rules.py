#!/usr/bin/env python3
"""The window in which two cluster nodes may disagree on a private room's rules (issue 19).

Starts nats-server -js and two lanchat-server nodes on 127.0.0.1 (ports picked by the system,
no announcing), then ROUNDS times: ann, an operator on node A, toggles the room's invite-only
mode; wit, a member on node B, waits for the `mode` event (sent by B after it applied the
change, which precedes the event in the stream). Prints the ms from sending `mode` on A to its
`ok` there, and to B having applied it (the event at wit), p50/p99/max. Bounded: ROUNDS rounds
(default 300), each wait at most 5 s; everything is killed at the end.

    cargo build -p lanchat-server   # or --release, then BIN=target/release/lanchat-server
    python3 bench/cluster_rules.py
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("BIN", os.path.join(TARGET, "debug", "lanchat-server"))
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
ROUNDS = int(os.environ.get("ROUNDS", "300"))


class Client:
    def __init__(self, addr, nick):
        self.sock = socket.create_connection(addr, timeout=5)
        self.file = self.sock.makefile("rb")
        self.next = 0
        self.hello = self.request({"type": "hello", "nick": nick})

    def send(self, frame):
        self.sock.sendall(json.dumps(frame).encode() + b"\n")

    def recv(self):
        line = self.file.readline()
        if not line:
            raise RuntimeError("closed")
        return json.loads(line)

    def request(self, frame):
        self.next += 1
        frame["id"] = self.next
        self.send(frame)
        while True:
            v = self.recv()
            if v.get("re") == self.next:
                return v

    def until(self, pred):
        while True:
            v = self.recv()
            if pred(v):
                return v


def start_node(url, env):
    p = subprocess.Popen(
        [BIN, "--listen", "127.0.0.1:0", "--no-announce", "--no-tls", "--rate-per-sec", "0",
         "--cluster", url, "--cluster-name", "bench"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    line = p.stdout.readline().decode()
    host, port = line.split()[1].rsplit(":", 1)
    return p, (host, int(port))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    d = tempfile.mkdtemp()
    procs = []
    try:
        nats = subprocess.Popen([NATS, "-js", "-a", "127.0.0.1", "-p", "-1", "-sd", d],
                                stderr=subprocess.PIPE)
        procs.append(nats)
        deadline = time.time() + 10
        url = None
        while time.time() < deadline and url is None:
            m = re.search(r"client connections on ([0-9.:]+)", nats.stderr.readline().decode())
            url = m and "nats://" + m.group(1)
        env = dict(os.environ, XDG_DATA_HOME=d, XDG_CONFIG_HOME=d, XDG_STATE_HOME=d)
        (a, a_addr), (b, b_addr) = start_node(url, env), start_node(url, env)
        procs += [a, b]
        ann, wit = Client(a_addr, "ann"), Client(b_addr, "wit")
        ann.request({"type": "join", "room": "secret"})
        # wit joins once b knows the room (else b would think wit made it).
        while not any(r["name"] == "secret" for r in wit.request({"type": "rooms"})["rooms"]):
            time.sleep(0.05)
        wit.request({"type": "join", "room": "secret"})
        oks, applied = [], []
        for i in range(ROUNDS):
            t0 = time.perf_counter()
            ok = ann.request({"type": "mode", "room": "secret", "invite_only": i % 2 == 0})
            t1 = time.perf_counter()
            assert ok["type"] == "ok", ok
            wit.until(lambda v: v.get("type") == "mode")
            t2 = time.perf_counter()
            oks.append((t1 - t0) * 1000)
            applied.append((t2 - t0) * 1000)
        for label, xs in (("mode ok on A", oks), ("applied on B (mode event at wit)", applied)):
            print(f"{label}: p50 {pct(xs, 0.5):.3f} ms, p99 {pct(xs, 0.99):.3f} ms, "
                  f"max {max(xs):.3f} ms ({len(xs)} rounds)")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
