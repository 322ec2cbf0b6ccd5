//! Discovery and TLS on a real (simulated) LAN: three network namespaces on one bridge. The server
//! runs in one on 0.0.0.0 with `--require-tls`; a second runs `lanchat discover`, finds it by
//! broadcast with its certificate's fingerprint, connects to the address it learnt, pinned to that
//! fingerprint, and sends a message that a client in the third receives; that one found the server
//! by itself and pinned it on first contact. A second test puts two nodes of one cluster (issue
//! 19) on two hosts, NATS on the first: discovery finds one cluster, and a client fails over.
//!
//! Needs root and iproute2. The addresses (10.77.0.0/24, 10.78.0.0/24) exist only inside the namespaces this
//! test creates, and it deletes them, also when it fails. Without root it is skipped with a printed
//! reason, except under CI (`CI=true`), where it must run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lanchat_tests::nats::Nats;
use lanchat_tests::{bin_path, ServerProcess, WAIT};
use serde_json::{json, Value};

/// The namespaces of one run, deleted on drop.
struct Lan {
    names: Vec<String>,
    /// What this LAN's namespace names start with: unique per process and per test, since the
    /// tests of one process run at the same time.
    prefix: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lan {
    /// A bridge in namespace `lan` and one host namespace per address, each with `eth0` on it;
    /// `test` tells this test's namespaces from another's.
    fn build(test: &str, hosts: &[(&str, &str)]) -> Result<Lan, String> {
        let prefix = format!("lc{}{test}", std::process::id());
        let bridge_ns = format!("{prefix}lan");
        let mut lan = Lan {
            names: Vec::new(),
            prefix,
        };
        ip(&["netns", "add", &bridge_ns])?;
        lan.names.push(bridge_ns.clone());
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"])?;
        for (i, (host, addr)) in hosts.iter().enumerate() {
            let ns = lan.ns(host);
            ip(&["netns", "add", &ns])?;
            lan.names.push(ns.clone());
            let port = format!("p{i}");
            // Both ends are created inside namespaces: nothing appears on this host's network.
            ip(&[
                "-n", &bridge_ns, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&[
                "-n", &bridge_ns, "link", "set", &port, "master", "br0", "up",
            ])?;
            ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Why this test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to create network namespaces".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("needs iproute2 (apt-get install -y iproute2)".into());
    }
    None
}

fn skip_or_fail(reason: String) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the simulated-LAN test must run in CI: {reason}");
    }
    eprintln!("SKIPPED discovery on a simulated LAN: {reason}");
}

#[test]
fn discover_and_chat_across_namespaces() {
    if let Some(reason) = unavailable() {
        return skip_or_fail(reason);
    }
    let lan = match Lan::build(
        "d",
        &[
            ("srv", "10.77.0.1/24"),
            ("a", "10.77.0.2/24"),
            ("b", "10.77.0.3/24"),
        ],
    ) {
        Ok(lan) => lan,
        Err(e) => return skip_or_fail(e),
    };
    let server_bin = bin_path("lanchat-server");
    let client_bin = bin_path("lanchat");
    // The clients' known servers (and history) stay out of the real home.
    let data = lanchat_tests::TempDir::new("netns-data");
    let server = ServerProcess::start_with(
        Command::new("ip")
            .args(["netns", "exec", &lan.ns("srv")])
            .arg(&server_bin)
            .args([
                "--listen",
                "0.0.0.0:7878",
                "--announce-interval",
                "1",
                "--name",
                "lan box",
                // Every connection below must be TLS: a plain one would be refused.
                "--require-tls",
            ]),
    );
    assert_eq!(server.addr.to_string(), "0.0.0.0:7878");
    let fingerprint = server
        .tls_sha256
        .clone()
        .expect("the server prints its fingerprint");

    // Host a: discover by broadcast on its LAN interface.
    let found = discover(&lan.ns("a"), &data);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["address"], "10.77.0.1:7878");
    assert_eq!(found[0]["name"], "lan box");
    assert_eq!(found[0]["tls_sha256"], fingerprint.as_str(), "{found:?}");
    let address = found[0]["address"].as_str().unwrap().to_owned();

    // The Python client's discovery finds it the same way.
    let py = Command::new("ip")
        .args(["netns", "exec", &lan.ns("a"), "python3", "-c"])
        .arg("import lanchat; print(' '.join(f'{s.host}:{s.port}' for s in lanchat.discover(timeout=2.0)))")
        .env("PYTHONPATH", lanchat_tests::workspace_root().join("interop/python"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "python discover: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "10.77.0.1:7878");

    // Host b: a client that finds the server by itself (no address: it connects over TLS to the
    // one server discovered, pinning the beacon's fingerprint on first contact) and prints every
    // frame as JSON.
    let bob_data = lanchat_tests::TempDir::new("netns-bob");
    let mut bob = json_client(
        &lan.ns("b"),
        &bob_data,
        &["--nick", "bob", "--json", "--interface", "eth0"],
    );
    bob.wait_for("bob's welcome", |v| v["type"] == "welcome");
    // First contact recorded the certificate the beacon announced and the handshake presented.
    let known = std::fs::read_to_string(bob_data.path().join("lanchat/known_servers"))
        .expect("bob's known servers");
    assert!(
        known.lines().any(|l| l.starts_with(fingerprint.as_str())),
        "{known}"
    );

    // Host a: connect to the discovered address and say something.
    let mut ann = Command::new("ip")
        .args(["netns", "exec", &lan.ns("a")])
        .arg(&client_bin)
        .env("XDG_DATA_HOME", data.path())
        .env("XDG_CONFIG_HOME", data.path())
        .args([&address, "--nick", "ann", "--tls-fingerprint", &fingerprint])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ann.stdin
        .take()
        .unwrap()
        .write_all(b"hello across the LAN\n")
        .unwrap();
    let m = bob.wait_for("ann's message", |v| v["type"] == "message");
    assert_eq!(m["from"], "ann");
    assert_eq!(m["text"], "hello across the LAN");
    assert!(wait_child(&mut ann).success());
    drop(bob.child.stdin.take());
    assert!(wait_child(&mut bob.child).success());
    drop(server);
    drop(lan);
}

/// `lanchat discover --json` by broadcast on `eth0` in namespace `ns`: the servers it found.
fn discover(ns: &str, data: &lanchat_tests::TempDir) -> Vec<Value> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin_path("lanchat"))
        .env("XDG_DATA_HOME", data.path())
        .env("XDG_CONFIG_HOME", data.path())
        .args([
            "discover",
            "--json",
            "--timeout",
            "2",
            "--interface",
            "eth0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "discover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `lanchat` client (`args`, `--json` among them) in namespace `ns` with its own data
/// directories, and a channel of the frames it prints.
fn json_client(ns: &str, data: &lanchat_tests::TempDir, args: &[&str]) -> JsonClient {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin_path("lanchat"))
        .env("XDG_DATA_HOME", data.path())
        .env("XDG_CONFIG_HOME", data.path())
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, frames) = mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    JsonClient { child, frames }
}

struct JsonClient {
    child: std::process::Child,
    frames: mpsc::Receiver<Value>,
}

impl JsonClient {
    /// The next frame `pred` accepts (others are skipped), within [`WAIT`].
    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for JsonClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 19 on the simulated LAN: two server hosts, each a node of one cluster (NATS on the
/// first), and a client host. Discovery there finds two servers of one cluster; a client given
/// both nodes chats with a user on the other node, and when its node is killed (`kill -9`) it
/// goes on through the other one.
#[test]
fn a_cluster_on_two_hosts_is_one_chat_and_its_clients_fail_over() {
    if let Some(reason) = unavailable() {
        return skip_or_fail(reason);
    }
    let lan = match Lan::build(
        "c",
        &[
            ("n1", "10.78.0.1/24"),
            ("n2", "10.78.0.2/24"),
            ("cl", "10.78.0.3/24"),
        ],
    ) {
        Ok(lan) => lan,
        Err(e) => return skip_or_fail(e),
    };
    let n1 = lan.ns("n1");
    // NATS listens on the first host's LAN address, which exists only in that namespace.
    let nats = Nats::start_in(&["ip", "netns", "exec", &n1], "10.78.0.1");
    let node = |host: &str| {
        ServerProcess::start_with(
            Command::new("ip")
                .args(["netns", "exec", &lan.ns(host)])
                .arg(bin_path("lanchat-server"))
                .args(["--listen", "0.0.0.0:7878", "--announce-interval", "1"])
                .args(["--no-tls", "--name", host, "--cluster", &nats.url])
                .args(["--cluster-name", "campus"]),
        )
    };
    let first = node("n1");
    let _second = node("n2");

    let data = lanchat_tests::TempDir::new("netns-cluster");
    let mut found: Vec<(String, String)> = discover(&lan.ns("cl"), &data)
        .iter()
        .map(|v| {
            (
                v["address"].as_str().unwrap().to_owned(),
                v["cluster"].to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("10.78.0.1:7878".to_owned(), "\"campus\"".to_owned()),
            ("10.78.0.2:7878".to_owned(), "\"campus\"".to_owned()),
        ],
        "one cluster, two nodes"
    );

    let cl = lan.ns("cl");
    let ann_data = lanchat_tests::TempDir::new("netns-ann");
    let bob_data = lanchat_tests::TempDir::new("netns-bob");
    let mut ann = json_client(
        &cl,
        &ann_data,
        &[
            "10.78.0.1:7878,10.78.0.2:7878",
            "--nick",
            "ann",
            "--json",
            "--no-tls",
        ],
    );
    let mut bob = json_client(
        &cl,
        &bob_data,
        &["10.78.0.2:7878", "--nick", "bob", "--json", "--no-tls"],
    );
    let welcome = ann.wait_for("ann's welcome", |v| v["type"] == "welcome");
    assert_eq!(
        (&welcome["name"], &welcome["cluster"]),
        (&json!("n1"), &json!("campus"))
    );
    bob.wait_for("bob's welcome", |v| v["type"] == "welcome");
    ann.say("before, from node n1");
    let m = bob.wait_for("ann's message", |v| v["type"] == "message");
    assert_eq!(
        (&m["from"], &m["text"]),
        (&json!("ann"), &json!("before, from node n1"))
    );

    first.signal(libc::SIGKILL);
    let welcome = ann.wait_for("a welcome from the other node", |v| v["type"] == "welcome");
    assert_eq!(welcome["name"], "n2");
    bob.say("after the failover");
    let m = ann.wait_for("bob's message", |v| {
        v["type"] == "message" && v["text"] == "after the failover"
    });
    assert_eq!(m["from"], "bob");
    drop((ann, bob));
    drop(nats);
    drop(lan);
}

fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("client did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
