"""Registered nicks in cluster mode (issue 19), timed on loopback: `register` round trip on a lone
server and on a cluster node, `hello` round trip on each (a node's claim and accounts catch-up),
and a take-over from another node (`hello` with the secret of a nick held on the first node).

Bounded: 20 registrations, 50 hellos per server, 10 take-overs; every socket read times out after
10 s. Everything listens on 127.0.0.1. Build first (debug, as the numbers in ARCHITECTURE.md):
    cargo build -p lanchat-server --bin lanchat-server && python3 bench/cluster_accounts.py
"""
import json, os, socket, statistics, subprocess, tempfile, threading, time

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
BIN = os.environ.get("LANCHAT_SERVER_BIN", os.path.join(TARGET, "debug", "lanchat-server"))
NATS = os.environ.get("LANCHAT_NATS_SERVER", "/usr/sbin/nats-server")
SECRET = "tWv2x9Qm4bLk7rZp"

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start(args):
    env = dict(os.environ, XDG_DATA_HOME=tempfile.mkdtemp(), XDG_CONFIG_HOME=tempfile.mkdtemp(),
               XDG_STATE_HOME=tempfile.mkdtemp(), XDG_RUNTIME_DIR=tempfile.mkdtemp())
    p = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", "--no-announce", "--no-tls",
                          "--rate-per-sec", "0"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env, text=True)
    line = p.stdout.readline()
    assert line.startswith("listening"), line
    host, port = line.split()[1].rsplit(":", 1)
    return p, (host, int(port))

class C:
    def __init__(self, addr):
        self.s = socket.create_connection(addr, timeout=10); self.f = self.s.makefile("r"); self.n = 0
    def req(self, frame):
        self.n += 1; frame["id"] = self.n
        self.s.sendall((json.dumps(frame) + "\n").encode())
        while True:
            v = json.loads(self.f.readline())
            if v.get("re") == self.n: return v
    def close(self): self.s.close()

def ms(xs):
    xs = sorted(xs)
    return f"median {statistics.median(xs)*1e3:.1f} ms, max {xs[-1]*1e3:.1f} ms (n={len(xs)})"

def register_times(addr, prefix, n=20):
    out = []
    for i in range(n):
        c = C(addr); assert c.req({"type":"hello","nick":f"{prefix}{i}"})["type"] == "welcome"
        t = time.perf_counter(); r = c.req({"type":"register","secret":SECRET}); out.append(time.perf_counter() - t)
        assert r.get("cmd") == "register", r
        c.close()
    return out

procs = []
try:
    nats_dir = tempfile.mkdtemp(); nport = free_port()
    nats = subprocess.Popen([NATS, "-js", "-a", "127.0.0.1", "-p", str(nport), "-sd", nats_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(nats)
    for line in nats.stderr:  # ready once it says so (a node would otherwise exit 3)
        if "Server is ready" in line:
            break
    # Its later log lines are read and dropped, so that a full pipe never stops it.
    threading.Thread(target=lambda: [None for _ in nats.stderr], daemon=True).start()
    lone, laddr = start([]); procs.append(lone)
    cl = ["--cluster", f"nats://127.0.0.1:{nport}", "--cluster-name", "bench"]
    a, aaddr = start(cl); procs.append(a)
    b, baddr = start(cl); procs.append(b)
    print("register, lone server:  ", ms(register_times(laddr, "lone")))
    print("register, cluster node: ", ms(register_times(aaddr, "node")))
    hellos = []
    for i in range(50):
        c = C(baddr); t = time.perf_counter(); assert c.req({"type":"hello","nick":f"h{i}"})["type"] == "welcome"
        hellos.append(time.perf_counter() - t); c.close()
    print("hello, cluster node:    ", ms(hellos))
    lone_hellos = []
    for i in range(50):
        c = C(laddr); t = time.perf_counter(); assert c.req({"type":"hello","nick":f"h{i}"})["type"] == "welcome"
        lone_hellos.append(time.perf_counter() - t); c.close()
    print("hello, lone server:     ", ms(lone_hellos))
    takeovers = []
    owners = []
    for i in range(10):
        c = C(aaddr); c.req({"type":"hello","nick":f"t{i}"}); c.req({"type":"register","secret":SECRET}); owners.append(c)
    for i in range(10):
        n = C(baddr); t = time.perf_counter()
        w = n.req({"type":"hello","nick":f"t{i}","secret":SECRET}); takeovers.append(time.perf_counter() - t)
        assert w["type"] == "welcome" and w["nick"] == f"t{i}", w
    print("take-over across nodes: ", ms(takeovers))
finally:
    for p in procs: p.kill()
