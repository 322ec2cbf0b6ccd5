//! Cluster mode (issue 19) as a client meets it: beacons that name the cluster, `lanchat
//! discover` showing it, and the terminal client failing over from a killed node to another.

use lanchat_tests::nats::Nats;
use lanchat_tests::{free_udp_port, ServerProcess, TempDir};
use serde_json::Value;

use crate::client::run_client_in;

/// A node of cluster `name` on 127.0.0.1:0 that announces on loopback (every second) to
/// discovery port `port`.
fn announcing_node(nats: &Nats, name: &str, port: u16) -> ServerProcess {
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
        "node-a",
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
