//! Cluster mode (issue 19) as a client meets it: beacons that name the cluster, `lanchat
//! discover` showing it, and the terminal client failing over from a killed node to another.

use lanchat_tests::nats::Nats;
use lanchat_tests::tmux::Tmux;
use lanchat_tests::{bin_path, free_udp_port, ServerProcess, TempDir, TestClient};
use serde_json::{json, Value};

use crate::client::run_client_in;

/// A node of cluster `name` on 127.0.0.1:0 called `node-a`, that announces on loopback (every
/// second) to discovery port `port`.
fn announcing_node(nats: &Nats, name: &str, port: u16) -> ServerProcess {
    announcing_node_called(nats, name, port, "node-a")
}

fn announcing_node_called(nats: &Nats, name: &str, port: u16, called: &str) -> ServerProcess {
    let port = port.to_string();
    ServerProcess::start_raw(&[
        "--listen",
        "127.0.0.1:0",
        "--announce-port",
        &port,
        "--announce-interval",
        "1",
        "--no-tls",
        "--name",
        called,
        "--cluster",
        &nats.url,
        "--cluster-name",
        name,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_beacons_name_its_cluster_and_discover_lists_it() {
    let nats = Nats::start();
    let port = free_udp_port();
    let node = announcing_node(&nats, "hq", port);
    // A lone server beside it announces no cluster.
    let alone = ServerProcess::start_announcing(port, "1", &["--no-tls", "--name", "alone"]);
    let data = TempDir::new("discover-cluster");
    let port = port.to_string();
    let args = ["discover", "--port", &port, "--interface", "lo", "--json"];
    let out = run_client_in(data.path(), &args, "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let by_port = |p: u16| {
        found
            .iter()
            .find(|s| s["address"] == format!("127.0.0.1:{p}"))
            .unwrap_or_else(|| panic!("{p} not found: {found:?}"))
    };
    assert_eq!(by_port(node.addr.port())["cluster"], "hq", "{found:?}");
    assert!(by_port(alone.addr.port()).get("cluster").is_none());

    // The table a person reads has a CLUSTER column.
    let out = run_client_in(data.path(), &args[..5], "").await;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let header = table.lines().next().unwrap_or_default();
    assert!(header.ends_with("CLUSTER"), "{table}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} in {table}"))
            .to_owned()
    };
    assert!(row("node-a").ends_with("hq"), "{table}");
    assert!(row("alone").ends_with(" -"), "{table}");
}

/// `lanchat` as ann in a 200x30 tmux pane, with its own data directory, given `addresses`.
/// Nodes that make and keep their own certificates serve the cluster's one (the first node's):
/// a client that pinned one node is welcomed over TLS by the other, so a failover keeps its
/// trust. Each node's own pair stays in its own state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_the_first_nodes_certificate() {
    let nats = Nats::start();
    let flags = ["--cluster", &nats.url, "--cluster-name", "tls"];
    let first = ServerProcess::start(&flags);
    let second = ServerProcess::start(&flags);
    let pinned = first.tls_sha256.clone().expect("TLS is on by default");
    assert_eq!(second.tls_sha256.as_deref(), Some(pinned.as_str()));
    let said = second.stderr_text();
    assert!(said.contains("serving the cluster's certificate"), "{said}");
    let (_ann, welcome) = TestClient::hello_tls(second.addr, &pinned, "ann").await;
    assert_eq!(welcome["cluster"], "tls", "{welcome}");
    // A node given its own pair (--tls-cert) serves it: the operator's choice.
    let state = TempDir::new("given-pair");
    let (cert, key) = (state.path().join("cert.pem"), state.path().join("key.pem"));
    let pair = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["given".to_owned()]).expect("names");
    let made = params.self_signed(&pair).expect("a certificate");
    std::fs::write(&cert, made.pem()).expect("write the certificate");
    std::fs::write(&key, pair.serialize_pem()).expect("write the key");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let given =
        ServerProcess::start(&[&flags[..], &["--tls-cert", cert, "--tls-key", key]].concat());
    assert_ne!(given.tls_sha256.as_deref(), Some(pinned.as_str()));
}

/// A node's beacons count the cluster's users and rooms, as far as it knows them: its own, and
/// other nodes' users while they are in a room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_beacons_count_the_users_and_rooms_of_every_node() {
    let nats = Nats::start();
    let port = free_udp_port();
    let node = announcing_node(&nats, "hq", port);
    let other = nats.node("hq", &[]);
    // bob here (in the lobby); ann there, in the lobby and in dev; cat there, in no room.
    let (_bob, _) = TestClient::hello(node.addr, "bob").await;
    let (mut ann, _) = TestClient::hello(other.addr, "ann").await;
    let ok = ann.request(json!({"type":"join","room":"dev"})).await;
    assert_eq!(ok["cmd"], "join", "{ok}");
    let mut cat = TestClient::connect(other.addr).await;
    let welcome = cat
        .request(json!({"type":"hello","nick":"cat","autojoin":false}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let data = TempDir::new("discover-counts");
    let port = port.to_string();
    let args = ["discover", "--port", &port, "--interface", "lo", "--json"];
    // The node learns ann's joins from the stream: ask until it has.
    let deadline = std::time::Instant::now() + lanchat_tests::WAIT;
    loop {
        let out = run_client_in(data.path(), &args, "").await;
        let found: Option<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|s| s["address"] == format!("127.0.0.1:{}", node.addr.port()));
        let counts = found
            .as_ref()
            .map(|s| (s["users"].clone(), s["rooms"].clone()));
        if counts == Some((json!(2), json!(2))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node-a's beacon never counted 2 users in 2 rooms: {found:?}"
        );
    }
}

fn terminal(addresses: &str, data: &TempDir) -> Tmux {
    let tmux = Tmux::new();
    let command = format!(
        "env NO_COLOR=1 XDG_DATA_HOME='{0}' XDG_CONFIG_HOME='{0}/config' TERM=xterm '{1}' \
         {addresses} --nick ann --no-bell",
        data.path().display(),
        bin_path("lanchat").display(),
    );
    tmux.new_session(200, 30, &command);
    tmux
}

fn row(screen: &[String], pred: impl Fn(&str) -> bool) -> bool {
    screen.iter().any(|l| pred(l))
}

/// ann's terminal given nodes `a` and `b` (in that order), once it shows it is on node A and
/// `bob` (a member of the lobby on node B) has seen her join through the stream.
async fn ann_on_node_a<S>(
    a: &ServerProcess,
    b: &ServerProcess,
    bob: &mut TestClient<S>,
    data: &TempDir,
) -> Tmux
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let term = terminal(&format!("{},{}", a.addr, b.addr), data);
    term.wait_for("connected to node-a", |s| {
        row(s, |l| l.contains("connected to node-a"))
    })
    .await;
    let join = bob.skip_until("join").await;
    assert_eq!(join["nick"], "ann", "{join}");
    term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_fails_over_to_another_node_and_catches_up() {
    let nats = Nats::start();
    let flags = ["--rate-per-sec", "0", "--cluster-lease-secs", "3"];
    let node = |name: &str| {
        let mut args = flags.to_vec();
        args.extend_from_slice(&["--name", name]);
        nats.node("test", &args)
    };
    let mut a = node("node-a");
    let b = node("node-b");
    let (mut bob, welcome) = TestClient::hello(b.addr, "bob").await;
    if !welcome["rooms"]
        .as_array()
        .unwrap()
        .contains(&json!("lobby"))
    {
        bob.request(json!({"type":"join","room":"lobby"})).await;
    }

    let data = TempDir::new("failover");
    let term = ann_on_node_a(&a, &b, &mut bob, &data).await;
    let ok = bob
        .request(json!({"type":"say","room":"lobby","text":"before the crash"}))
        .await;
    assert_eq!(ok["cmd"], "say", "{ok}");
    term.wait_for("bob's first line", |s| {
        row(s, |l| l.ends_with("<bob> before the crash"))
    })
    .await;

    // Node A freezes, so nothing more reaches ann through it; bob speaks on node B meanwhile
    // (stored: `ok`); then node A dies.
    a.signal(19); // SIGSTOP
    let ok = bob
        .request(json!({"type":"say","room":"lobby","text":"while you were away"}))
        .await;
    assert_eq!(ok["cmd"], "say", "{ok}");
    a.kill();
    let killed = std::time::Instant::now();

    let screen = term
        .wait_for("the reconnect to node B", |s| {
            row(s, |l| l.contains("-- reconnected to node-b as "))
        })
        .await;
    // For the record (the back-off: a first try at node A within 0.25-0.5 s, then node B within
    // 0.5-1 s more; the screen is polled every 50 ms).
    eprintln!(
        "failover: reconnected to node B {:?} after kill -9",
        killed.elapsed()
    );
    let text = screen.join("\n");
    assert!(
        text.contains(&format!("trying another node of cluster test: {}", b.addr)),
        "{text}"
    );
    assert!(
        row(&screen, |l| l.contains("caught up 1 message")),
        "{text}"
    );
    term.wait_for("the missed line", |s| {
        row(s, |l| l.ends_with("<bob> while you were away"))
    })
    .await;

    // New messages flow both ways through node B.
    bob.request(json!({"type":"say","room":"lobby","text":"welcome back"}))
        .await;
    term.wait_for("bob's new line", |s| {
        row(s, |l| l.ends_with("<bob> welcome back"))
    })
    .await;
    term.send_literal("hello from node b");
    term.send_key("Enter");
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"], "hello from node b", "{m}");
    assert!(m["from"].as_str().unwrap().starts_with("ann"), "{m}");
}

/// The same failover over TLS, with nothing configured: the client pins the certificate at first
/// contact, and the node it fails over to presents the same one (the cluster's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_fails_over_over_tls_with_its_first_pin() {
    let nats = Nats::start();
    let node = |name: &str| {
        ServerProcess::start(&[
            "--cluster",
            &nats.url,
            "--cluster-name",
            "test",
            "--rate-per-sec",
            "0",
            "--name",
            name,
        ])
    };
    let mut a = node("node-a");
    let b = node("node-b");
    let pin = b.tls_sha256.clone().expect("TLS is on by default");
    let (mut bob, _) = TestClient::hello_tls(b.addr, &pin, "bob").await;
    bob.request(json!({"type":"join","room":"lobby"})).await;

    let data = TempDir::new("failover-tls");
    let term = ann_on_node_a(&a, &b, &mut bob, &data).await;
    a.kill();
    term.wait_for("the reconnect to node B", |s| {
        row(s, |l| l.contains("-- reconnected to node-b as "))
    })
    .await;
    bob.request(json!({"type":"say","room":"lobby","text":"over tls"}))
        .await;
    let screen = term
        .wait_for("bob's line", |s| row(s, |l| l.ends_with("<bob> over tls")))
        .await;
    let text = screen.join("\n");
    assert!(!text.contains("untrusted"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_found_by_discovery_fails_over_to_the_other_node_heard() {
    let nats = Nats::start();
    let port = free_udp_port();
    let mut a = announcing_node_called(&nats, "hq", port, "node-a");
    let _b = announcing_node_called(&nats, "hq", port, "node-b");
    let data = TempDir::new("failover-discovered");
    let port = port.to_string();
    let term = terminal(&format!("--discover-port {port} --interface lo"), &data);
    // Both nodes are listed; the first (node-a, by name) is chosen.
    term.wait_for("the choice", |s| {
        row(s, |l| l.contains("connect to which server?"))
    })
    .await;
    term.send_literal("1");
    term.send_key("Enter");
    term.wait_for("connected to node-a", |s| {
        row(s, |l| l.contains("connected to node-a"))
    })
    .await;
    a.kill();
    term.wait_for("the reconnect to node B", |s| {
        row(s, |l| l.contains("-- reconnected to node-b as "))
    })
    .await;
}
