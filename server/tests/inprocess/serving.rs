//! `run()` in-process on `127.0.0.1:0`: real sockets, the real accept loop, and shutdown.

use std::time::Duration;

use lanchat_server::listener::bind_tcp;
use lanchat_server::{run, Bound, Config, Listener};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::Wire;

async fn dial(addr: std::net::SocketAddr) -> Wire {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (r, w) = stream.into_split();
    Wire::new(r, w)
}

#[tokio::test]
async fn run_serves_until_shutdown_and_returns() {
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let bound = Bound {
        listeners: vec![Listener::Tcp(listener)],
        discovery: None,
        store: None,
    };
    let config = Config {
        max_per_ip: 2,
        ..Config::default()
    };
    let server = tokio::spawn(run(bound, config, shutdown.clone()));

    let mut ann = dial(addr).await;
    ann.hello("ann").await;
    let mut bob = dial(addr).await;
    bob.hello("bob").await;
    assert_eq!(ann.recv().await["type"], "join");
    bob.send(json!({"type":"say","id":1,"room":"lobby","text":"over TCP"}))
        .await;
    assert_eq!(bob.recv().await["type"], "ok");
    assert_eq!(ann.recv().await["text"], "over TCP");

    // A third connection from the same address is over --max-per-ip.
    let mut third = dial(addr).await;
    let refused = third.read_to_close().await;
    assert_eq!(refused[0]["code"], "server_full");
    assert_eq!(refused[1]["reason"], "server_full");

    shutdown.cancel();
    for c in [&mut ann, &mut bob] {
        assert_eq!(
            c.read_to_close().await.last().unwrap()["reason"],
            "shutting_down"
        );
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
}
