//! UDP discovery on loopback: beacons, answers to discover, the stopping beacon, garbage ignored.
//! (The simulated-LAN test with network namespaces is in `netns.rs`.)

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lanchat_tests::{free_udp_port, ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};

/// A socket that hears broadcasts on the discovery port, as a passive client would.
fn beacon_listener(port: u16) -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
        .unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// The next beacon from `instance` (any instance if None) satisfying `pred`, within `WAIT`.
fn wait_beacon(sock: &UdpSocket, pred: impl Fn(&Value) -> bool) -> (Value, SocketAddr) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Ok(v) = serde_json::from_slice::<Value>(&buf[..n]) {
                if v["type"] == "beacon" && pred(&v) {
                    return (v, from);
                }
            }
        }
    }
    panic!("no matching beacon within {WAIT:?}");
}

fn start(port: u16) -> ServerProcess {
    ServerProcess::start_announcing(port, "1", &["--name", "discovery test"])
}

/// Send `{"type":"discover","protocol":<protocol>}` from `socket` to the server's discovery port
/// until an answer comes (UDP may drop one), within `WAIT`. Returns the beacon, where it came
/// from, and how long the answered query took.
fn ask(socket: &UdpSocket, port: u16, protocol: u64) -> (Value, SocketAddr, Duration) {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let query = json!({"type":"discover","protocol":protocol}).to_string();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    loop {
        assert!(Instant::now() < deadline, "discover never answered");
        let started = Instant::now();
        socket
            .send_to(query.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let beacon = serde_json::from_slice::<Value>(&buf[..n]).unwrap();
            return (beacon, from, started.elapsed());
        }
    }
}

#[tokio::test]
async fn beacons_follow_users_and_say_stopping() {
    let port = free_udp_port();
    let listener = beacon_listener(port);
    let mut server = start(port);
    let tcp_port = server.addr.port();
    let (beacon, from) = wait_beacon(&listener, |v| v["port"] == tcp_port);
    assert!(from.ip().is_loopback(), "{from}");
    assert_eq!(beacon["protocol"], 1);
    assert_eq!(beacon["name"], "discovery test");
    assert!(beacon["server"].as_str().unwrap().starts_with("lanchat/"));
    assert_eq!(beacon["users"], 0);
    assert_eq!(beacon["auth"], false);
    assert_eq!(beacon["state"], "up");
    let instance = beacon["instance"].clone();
    assert_eq!(instance.as_str().unwrap().len(), 36);

    let (_a, _) = TestClient::hello(server.addr, "a").await;
    let (_b, _) = TestClient::hello(server.addr, "b").await;
    let (beacon, _) = wait_beacon(&listener, |v| v["instance"] == instance && v["users"] == 2);
    assert_eq!(beacon["rooms"], 1);

    server.sigterm();
    let (beacon, _) = wait_beacon(&listener, |v| {
        v["instance"] == instance && v["state"] == "stopping"
    });
    assert_eq!(beacon["port"], tcp_port);
    assert!(server.wait_exit(Duration::from_secs(5)).unwrap().success());
}

#[tokio::test]
async fn discover_is_answered_at_once_and_garbage_is_ignored() {
    let port = free_udp_port();
    let server = ServerProcess::start_answering(port, &["--password", "pw"]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Garbage first: not JSON, wrong type, oversized, a beacon pretending to be a query.
    let big = vec![b'{'; 1500];
    for _ in 0..200 {
        for d in [
            &b"garbage"[..],
            br#"{"type":"other"}"#,
            &big,
            br#"{"type":"discover"}"#,
        ] {
            client.send_to(d, ("127.0.0.1", port)).unwrap();
        }
    }
    // UDP may drop under the flood: like a real client, `ask` repeats the query until answered.
    let (beacon, from, took) = ask(&client, port, 1);
    assert_eq!(from.ip(), server.addr.ip());
    assert_eq!(beacon["port"], server.addr.port());
    assert_eq!(beacon["auth"], true);
    assert_eq!(beacon["state"], "up");
    eprintln!("discover answered in {took:?}");
    // The chat is undisturbed.
    let mut c = TestClient::connect(server.addr).await;
    let w = c
        .request(json!({"type":"hello","nick":"x","password":"pw"}))
        .await;
    assert_eq!(w["type"], "welcome");
}

#[test]
fn discover_without_a_protocol_number_is_not_answered() {
    let port = free_udp_port();
    let server = ServerProcess::start_answering(port, &[]);
    let asker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for query in [
        &br#"{"type":"discover"}"#[..],
        br#"{"type":"discover","protocol":null}"#,
        br#"{"type":"discover","protocol":-1}"#,
        br#"{"type":"discover","protocol":"1"}"#,
        br#"{"type":"discover","protocol":1.5}"#,
    ] {
        asker.send_to(query, ("127.0.0.1", port)).unwrap();
    }
    // The server handles datagrams one at a time, in order: once a second socket's good query is
    // answered, any answer to the first one's would already be waiting for it.
    let sentinel = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (beacon, _, _) = ask(&sentinel, port, 7);
    assert_eq!(
        beacon["port"],
        server.addr.port(),
        "any protocol number is answered"
    );
    asker.set_nonblocking(true).unwrap();
    match asker.recv_from(&mut [0u8; 2048]) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a discover without a protocol number was answered: {other:?}"),
    }
}

#[tokio::test]
async fn two_servers_share_the_discovery_port() {
    let port = free_udp_port();
    let s1 = start(port);
    let s2 = start(port);
    let client = UdpSocket::bind("0.0.0.0:0").unwrap();
    client.set_broadcast(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    client
        .send_to(
            br#"{"type":"discover","protocol":1}"#,
            ("127.255.255.255", port),
        )
        .unwrap();
    let mut ports = std::collections::HashSet::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    while ports.len() < 2 && Instant::now() < deadline {
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            let v: Value = serde_json::from_slice(&buf[..n]).unwrap();
            ports.insert(v["port"].as_u64().unwrap() as u16);
        }
    }
    assert_eq!(
        ports,
        [s1.addr.port(), s2.addr.port()].into_iter().collect(),
        "both servers answered one broadcast discover"
    );
}
