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
        cluster: None,
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

/// The TLS seam through `run()`: one port, the first byte decides; a pinned TLS client and a
/// plain one chat; `--require-tls` refuses the plain one.
#[tokio::test]
async fn tls_and_plain_on_one_port_and_require_tls() {
    use lanchat_protocol::pin;
    use lanchat_server::tls;

    let dir = std::env::temp_dir().join(format!("lanchat-inprocess-tls-{}", uuid::Uuid::new_v4()));
    let (identity, made) = tls::load_or_create(&dir.join("tls"), "inprocess").unwrap();
    assert!(made);
    let pinned = pin::Fingerprint::parse(identity.fingerprint()).unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(pin::client_config(pinned)));
    for require_tls in [false, true] {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let bound = Bound {
            listeners: vec![Listener::Tcp(listener)],
            discovery: None,
            store: None,
            cluster: None,
        };
        let config = Config {
            tls: Some(identity.clone()),
            require_tls,
            ..Config::default()
        };
        let server = tokio::spawn(run(bound, config, shutdown.clone()));

        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(pin::SERVER_NAME).unwrap();
        let stream = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .unwrap()
            .expect("pinned handshake");
        let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(pin::Fingerprint::of(&presented), pinned);
        let (r, w) = tokio::io::split(stream);
        let mut tina = Wire::new(r, w);
        tina.hello("tina").await;

        let mut paul = dial(addr).await;
        if require_tls {
            paul.send(json!({"type":"hello","id":1,"nick":"paul"}))
                .await;
            let refused = paul.read_to_close().await;
            assert_eq!(refused[0]["code"], "tls_required", "{refused:?}");
            assert_eq!(refused[1]["reason"], "tls_required", "{refused:?}");
        } else {
            paul.hello("paul").await;
            assert_eq!(tina.recv().await["type"], "join");
            tina.send(json!({"type":"say","id":2,"room":"lobby","text":"sealed"}))
                .await;
            assert_eq!(tina.recv().await["type"], "ok");
            assert_eq!(paul.recv().await["text"], "sealed");
            paul.send(json!({"type":"say","id":2,"room":"lobby","text":"open"}))
                .await;
            assert_eq!(paul.recv().await["type"], "ok");
            assert_eq!(tina.recv().await["text"], "open");
        }
        shutdown.cancel();
        assert_eq!(
            tina.read_to_close().await.last().unwrap()["reason"],
            "shutting_down"
        );
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
