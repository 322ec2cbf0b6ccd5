//! Trust on the LAN, from the terminal client's side (issue 15): the first contact records the
//! server's certificate and later runs hold the server to it; a changed certificate is refused
//! (nothing sent, exit 2) until `lanchat trust` accepts it; a rogue on another loopback address
//! that claims the real server's instance and name is shown as a conflict, is not connected to,
//! and never sees the password.
//!
//! Every `lanchat` here has its own `XDG_DATA_HOME` (a temporary directory), shared between the
//! runs of one test where the test is about what a run remembers.

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lanchat_tests::{ServerProcess, TempDir, TestClient, WAIT};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::{announcing_server, free_port, run_client_in};
use lanchat_tests::free_udp_port;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn known_servers(data: &Path) -> String {
    std::fs::read_to_string(data.join("lanchat/known_servers")).unwrap_or_default()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn first_contact_through_discovery_records_the_pin_and_later_runs_use_it() {
    let up = free_udp_port();
    let server = announcing_server(up);
    let fp = server.fingerprint().to_owned();
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let data = TempDir::new("trust-first");
    let port = up.to_string();
    let args = [
        "--discover-port",
        &port,
        "--interface",
        "lo",
        "--nick",
        "zed",
    ];

    let out = run_client_in(data.path(), &args, "first run\n").await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let short = format!("SHA256:{}", &fp[..16]);
    assert!(
        err.contains("first contact with e2e-office") && err.contains(&short) && err.contains(&fp),
        "{err}"
    );
    let file = data.path().join("lanchat/known_servers");
    assert!(
        known_servers(data.path()).contains(&format!("{fp} e2e-office\n")),
        "{}",
        known_servers(data.path())
    );
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let m = bob.skip_until("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("zed"), Some("first run"))
    );

    // The second run finds the pin: no first contact, same server.
    let out = run_client_in(data.path(), &args, "second run\n").await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("first contact"), "{err}");
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"], "second run");

    // `lanchat discover` shows the short fingerprint and the pin.
    let out = run_client_in(
        data.path(),
        &["discover", "--port", &port, "--interface", "lo"],
        "",
    )
    .await;
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let row = table
        .lines()
        .find(|l| l.contains("e2e-office"))
        .unwrap_or_else(|| panic!("not listed:\n{table}"));
    assert!(row.contains(&short) && row.contains("pinned"), "{table}");
    assert!(!row.contains("CONFLICT"), "{table}");
}

#[tokio::test]
async fn a_changed_certificate_is_refused_until_the_user_trusts_it() {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--listen", listen.as_str(), "--no-announce"];
    let data = TempDir::new("trust-changed");
    let chat = [listen.as_str(), "--nick", "zed"];

    let mut first = ServerProcess::start_raw(&args);
    let old = first.fingerprint().to_owned();
    let out = run_client_in(data.path(), &chat, "hello\n").await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("first contact with {listen}")),
        "{err}"
    );
    assert!(known_servers(data.path()).contains(&format!("{old} {listen}\n")));
    first.stop();

    // Same address, new state directory: a new certificate.
    let second = ServerProcess::start_raw(&args);
    let new = second.fingerprint().to_owned();
    assert_ne!(old, new);
    let (mut bob, _) = TestClient::hello(second.addr, "bob").await;
    let out = run_client_in(data.path(), &chat, "must not arrive\n").await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "does not match its pin",
        "WARNING",
        old.as_str(),
        new.as_str(),
        "no password",
        &format!("lanchat trust {listen} {new}"),
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(
        known_servers(data.path()).contains(&old),
        "the old pin stays"
    );

    let out = run_client_in(data.path(), &["trust", &listen, &new], "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("trusting"),
        "{}",
        text(&out.stdout)
    );
    assert!(known_servers(data.path()).contains(&format!("{new} {listen}\n")));

    let out = run_client_in(data.path(), &chat, "accepted\n").await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("first contact"), "{err}");
    // The refused run never said hello: the first zed bob sees is this one.
    let join = bob.expect_event("join").await;
    assert_eq!(join["nick"], "zed");
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"], "accepted");
}

/// The rogue: beacons from 127.0.0.2 that copy the real server's instance and name but point at
/// its own TCP port and announce its own certificate (it cannot present the real one), sent to
/// the loopback broadcast address as a server's periodic beacons are, until dropped.
struct Rogue {
    task: tokio::task::JoinHandle<()>,
}

impl Rogue {
    fn start(discovery_port: u16, beacon: Value) -> Rogue {
        let socket = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        socket.set_broadcast(true).unwrap();
        let bytes = serde_json::to_vec(&beacon).unwrap();
        let task = tokio::spawn(async move {
            loop {
                let _ = socket.send_to(&bytes, ("127.255.255.255", discovery_port));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Rogue { task }
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_rogue_claiming_the_servers_instance_is_a_conflict_and_gets_nothing() {
    let up = free_udp_port();
    let port = up.to_string();
    let server = ServerProcess::start_raw(&[
        "--listen",
        "127.0.0.1:0",
        "--announce-port",
        &port,
        "--announce-interval",
        "1",
        "--name",
        "e2e-office",
        "--password",
        "sesame",
    ]);
    let data = TempDir::new("trust-rogue");
    let discover = [
        "discover",
        "--port",
        &port,
        "--interface",
        "lo",
        "--timeout",
        "2",
    ];

    // The real server's instance, as anyone on the LAN can learn it.
    let out = run_client_in(data.path(), &[&discover[..], &["--json"]].concat(), "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let real: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(real["tls_sha256"], server.fingerprint());

    let trap = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    trap.set_nonblocking(true).unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let _rogue = Rogue::start(
        up,
        json!({"type":"beacon","protocol":1,"server":"lanchat/0.1.0","name":"e2e-office",
               "instance":real["instance"],"port":trap_port,"users":0,"rooms":0,"auth":true,
               "state":"up","tls_sha256":"ab".repeat(32)}),
    );

    // Both are listed, each marked as a conflict, the real one with its short fingerprint.
    let deadline = Instant::now() + WAIT;
    let table = loop {
        let out = run_client_in(data.path(), &discover, "").await;
        let table = text(&out.stdout);
        if table.lines().filter(|l| l.contains("CONFLICT")).count() == 2 {
            break table;
        }
        assert!(Instant::now() < deadline, "no conflict shown:\n{table}");
    };
    let rogue_addr = format!("127.0.0.2:{trap_port}");
    for needle in [
        server.addr.to_string(),
        rogue_addr.clone(),
        format!("SHA256:{}", &server.fingerprint()[..16]),
    ] {
        assert!(table.contains(&needle), "{needle:?} missing from:\n{table}");
    }

    // The chat command will not choose, and says how to choose.
    let password = data.path().join("password");
    std::fs::write(&password, "sesame\n").unwrap();
    let out = run_client_in(
        data.path(),
        &[
            "--discover-port",
            &port,
            "--interface",
            "lo",
            "--discover-timeout",
            "2",
            "--nick",
            "zed",
            "--password-file",
            password.to_str().unwrap(),
        ],
        "hello\n",
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "conflict",
        &server.addr.to_string(),
        &rogue_addr,
        "--tls-fingerprint",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(
        !known_servers(data.path()).contains("e2e-office"),
        "nothing recorded"
    );

    // The client has exited, so any connection it made is in the trap's queue and closed: the
    // trap received nothing, or at most a TLS ClientHello, and never the password.
    loop {
        match trap.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(WAIT)).unwrap();
                let mut got = Vec::new();
                let _ = conn.read_to_end(&mut got);
                assert!(got.is_empty() || got[0] == 0x16, "{}", text(&got));
                assert!(!text(&got).contains("sesame"));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("accept: {e}"),
        }
    }

    // Named explicitly, with its fingerprint, the real server is reached.
    let pin = server.fingerprint().to_owned();
    let mut bob = TestClient::connect(server.addr).await;
    let welcome = bob
        .request(json!({"type":"hello","nick":"bob","password":"sesame"}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let addr = server.addr.to_string();
    let out = run_client_in(
        data.path(),
        &[
            &addr,
            "--tls-fingerprint",
            &pin,
            "--nick",
            "zed",
            "--password-file",
            password.to_str().unwrap(),
        ],
        "it is me\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"], "it is me");
}

#[tokio::test]
async fn a_server_without_tls_is_reached_in_plain_with_a_warning() {
    let server = ServerProcess::start(&["--no-tls", "--password", "sesame"]);
    let mut bob = TestClient::connect(server.addr).await;
    let welcome = bob
        .request(json!({"type":"hello","nick":"bob","password":"sesame"}))
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let data = TempDir::new("trust-plain");
    let password = data.path().join("password");
    std::fs::write(&password, "sesame\n").unwrap();
    let addr = server.addr.to_string();
    let chat = [
        addr.as_str(),
        "--nick",
        "zed",
        "--password-file",
        password.to_str().unwrap(),
    ];

    // Never seen and not speaking TLS: plain, said loudly, nothing recorded.
    let out = run_client_in(data.path(), &chat, "in the clear\n").await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("does not speak TLS") && err.contains("the password included"),
        "{err}"
    );
    assert!(!known_servers(data.path()).contains(&addr));
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"], "in the clear");

    // --no-tls does not even try, and warns about the password.
    let out = run_client_in(data.path(), &[&chat[..], &["--no-tls"]].concat(), "again\n").await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("clear text") && !err.contains("does not speak TLS"),
        "{err}"
    );
    let m = bob.skip_until("message").await;
    assert_eq!(m["text"], "again");
}
