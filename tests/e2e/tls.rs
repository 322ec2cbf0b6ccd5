//! TLS on the chat port (issue 15): one port for TLS and plain JSON lines, the fingerprint in
//! discovery and on stdout, the certificate kept across restarts with private modes,
//! `--require-tls`, a given pair, a broken pair at start, and a stalled handshake.

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lanchat_protocol::discovery::Datagram;
use lanchat_protocol::pin::Fingerprint;
use lanchat_tests::{bin_path, free_udp_port, ServerProcess, TempDir, TestClient, WAIT};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ask the server's discovery port on loopback until an answer comes (UDP may drop one).
fn discover(port: u16) -> Datagram {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    loop {
        assert!(Instant::now() < deadline, "discover never answered");
        socket
            .send_to(br#"{"type":"discover","protocol":1}"#, ("127.0.0.1", port))
            .unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return Datagram::parse(&buf[..n]).expect("a discovery datagram");
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The fingerprint of the first certificate of a PEM file.
fn fingerprint_of_file(path: &Path) -> String {
    let der = CertificateDer::from_pem_file(path).expect("a PEM certificate");
    Fingerprint::of(&der).to_string()
}

fn fingerprint_presented(c: &lanchat_tests::TlsClient) -> String {
    Fingerprint::of(c.peer_certificate.as_ref().expect("a TLS client")).to_string()
}

#[tokio::test]
async fn tls_and_plain_clients_share_a_room_and_the_pin_is_the_same_everywhere() {
    let port = free_udp_port();
    let port_arg = port.to_string();
    let server = ServerProcess::start_raw(&[
        "--listen",
        "127.0.0.1:0",
        "--rate-per-sec",
        "0",
        "--announce-port",
        &port_arg,
        "--announce-interval",
        "3600",
    ]);
    let printed = server.fingerprint().to_owned();
    assert_eq!(printed.len(), 64);
    assert!(printed
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let Datagram::Beacon(answer) = discover(port) else {
        panic!("the answer is a beacon");
    };
    assert_eq!(answer.tls_sha256.as_deref(), Some(printed.as_str()));

    let (mut tina, _) = TestClient::hello_tls(server.addr, &printed, "tina").await;
    assert_eq!(fingerprint_presented(&tina), printed);
    let (mut paul, _) = TestClient::hello(server.addr, "paul").await;
    let joined = tina.expect_event("join").await;
    assert_eq!(joined["nick"], "paul", "{joined}");

    let ok = tina
        .request(json!({"type":"say","room":"lobby","text":"over TLS"}))
        .await;
    assert_eq!(ok["type"], "ok", "{ok}");
    let m = paul.expect_event("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("tina"), Some("over TLS"))
    );
    let ok = paul
        .request(json!({"type":"say","room":"lobby","text":"in plain"}))
        .await;
    assert_eq!(ok["type"], "ok", "{ok}");
    let m = tina.expect_event("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("paul"), Some("in plain"))
    );
    // A DM too, and a reply large enough to take several TLS records.
    let long = "x".repeat(4000);
    for _ in 0..10 {
        let ok = paul
            .request(json!({"type":"dm","to":"tina","text":long}))
            .await;
        assert_eq!(ok["type"], "ok", "{ok}");
    }
    for _ in 0..10 {
        let dm = tina.expect_event("direct").await;
        assert_eq!(dm["text"].as_str().map(str::len), Some(4000));
    }
    tina.assert_quiet().await;
    paul.assert_quiet().await;
}

#[tokio::test]
async fn a_client_pinned_to_another_certificate_fails_the_handshake() {
    let server = ServerProcess::start(&[]);
    let wrong = "0".repeat(64);
    assert!(TestClient::handshake(server.addr, &wrong).await.is_err());
    // The server is fine: the right pin still works.
    TestClient::hello_tls(server.addr, server.fingerprint(), "right").await;
}

/// A host looping over TLS handshakes (each costs the server a signature and a key exchange) gets
/// its burst, then 8 a second; another host is not held up.
#[tokio::test]
async fn handshakes_from_one_address_are_rate_limited() {
    use lanchat_protocol::pin;
    let server = ServerProcess::start(&[]);
    let fingerprint = pin::Fingerprint::parse(server.fingerprint()).unwrap();
    let config = std::sync::Arc::new(pin::client_config(fingerprint));
    let handshake_from = |ip: [u8; 4]| {
        let config = config.clone();
        let addr = server.addr;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((ip, 0).into()).unwrap();
            let stream = tokio::time::timeout(WAIT, socket.connect(addr))
                .await
                .unwrap()
                .unwrap();
            let name = rustls::pki_types::ServerName::try_from(pin::SERVER_NAME).unwrap();
            let connector = tokio_rustls::TlsConnector::from(config);
            tokio::time::timeout(WAIT, connector.connect(name, stream))
                .await
                .expect("handshake answered or refused in time")
                .is_ok()
        }
    };
    let started = Instant::now();
    let mut done = 0;
    for _ in 0..100 {
        done += usize::from(handshake_from([127, 0, 0, 3]).await);
    }
    let allowed = 64.0 + 8.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(
        (done as f64) <= allowed && done >= 64,
        "{done} handshakes completed, {allowed} allowed"
    );
    assert!(
        handshake_from([127, 0, 0, 1]).await,
        "another host still gets its handshake"
    );
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_both_spoken() {
    use lanchat_protocol::pin::{PinnedCert, SERVER_NAME};
    use rustls::version::{TLS12, TLS13};
    use rustls::ProtocolVersion;
    use std::sync::Arc;

    let server = ServerProcess::start(&[]);
    let pin = Fingerprint::parse(server.fingerprint()).unwrap();
    for (version, spoken, nick) in [
        (&TLS12, ProtocolVersion::TLSv1_2, "twelve"),
        (&TLS13, ProtocolVersion::TLSv1_3, "thirteen"),
    ] {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert::new(pin)))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(server.addr))
            .await
            .unwrap()
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
        let stream = tokio::time::timeout(WAIT, connector.connect(name, tcp))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{spoken:?}: {e}"));
        assert_eq!(stream.get_ref().1.protocol_version(), Some(spoken));
        let mut c = TestClient::from_stream(stream);
        let welcome = c.request(json!({"type":"hello","nick":nick})).await;
        assert_eq!(welcome["type"], "welcome", "{spoken:?}: {welcome}");
    }
}

#[tokio::test]
async fn the_certificate_is_kept_in_the_data_dir_across_restarts() {
    let data = TempDir::new("tls-data");
    let data_arg = data.path().to_str().unwrap();
    let mut first = ServerProcess::start(&["--data-dir", data_arg]);
    let pin = first.fingerprint().to_owned();
    first.stop();
    let tls = data.path().join("tls");
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join("cert.pem")), 0o600);
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
    assert_eq!(fingerprint_of_file(&tls.join("cert.pem")), pin);

    let second = ServerProcess::start(&["--data-dir", data_arg]);
    assert_eq!(
        second.fingerprint(),
        pin,
        "the same certificate after a restart"
    );
    let (client, _) = TestClient::hello_tls(second.addr, &pin, "again").await;
    assert_eq!(fingerprint_presented(&client), pin);
}

#[tokio::test]
async fn without_a_data_dir_the_certificate_lands_in_xdg_state_home_privately() {
    let state = TempDir::new("tls-state");
    // umask 000: the modes are the server's own choice, not the umask's.
    let server = ServerProcess::start_with(
        Command::new("sh")
            .args(["-c", "umask 000; exec \"$0\" \"$@\""])
            .arg(bin_path("lanchat-server"))
            .args(["--listen", "127.0.0.1:0", "--no-announce"])
            .env("XDG_STATE_HOME", state.path()),
    );
    let home = state.path().join("lanchat-server");
    let tls = home.join("tls");
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join("cert.pem")), 0o600);
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
    let names: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["tls"], "no staging directory left behind");
    assert_eq!(
        fingerprint_of_file(&tls.join("cert.pem")),
        server.fingerprint()
    );
    let (c, _) = TestClient::hello_tls(server.addr, server.fingerprint(), "xdg").await;
    assert_eq!(fingerprint_presented(&c), server.fingerprint());
}

#[tokio::test]
async fn require_tls_refuses_plain_tcp_with_tls_required_but_not_the_unix_socket() {
    let dir = TempDir::new("tls-unix");
    let socket = dir.path().join("chat.sock");
    let mut server = ServerProcess::start(&["--require-tls", "--unix", socket.to_str().unwrap()]);
    assert_eq!(
        server.next_listening(),
        format!("unix:{}", socket.display())
    );
    let pin = server.fingerprint().to_owned();
    let (mut tina, _) = TestClient::hello_tls(server.addr, &pin, "tina").await;

    let mut plain = TestClient::connect(server.addr).await;
    plain
        .send(json!({"type":"hello","nick":"paul","id":1}))
        .await;
    let frames = plain.read_to_close().await;
    let kinds: Vec<(&str, &str)> = frames
        .iter()
        .map(|f: &Value| {
            (
                f["type"].as_str().unwrap_or(""),
                f["code"].as_str().or(f["reason"].as_str()).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("error", "tls_required"), ("bye", "tls_required")],
        "{frames:?}"
    );

    // The Unix socket is protected by its mode, not by TLS.
    let stream = tokio::time::timeout(WAIT, tokio::net::UnixStream::connect(&socket))
        .await
        .unwrap()
        .unwrap();
    let mut local = TestClient::from_stream(stream);
    let welcome = local.request(json!({"type":"hello","nick":"local"})).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let joined = tina.expect_event("join").await;
    assert_eq!(joined["nick"], "local");
    local
        .request(json!({"type":"say","room":"lobby","text":"from the socket"}))
        .await;
    let m = tina.expect_event("message").await;
    assert_eq!(m["text"], "from the socket");
    tina.assert_quiet().await;
}

#[tokio::test]
async fn a_given_pair_is_the_one_presented_and_nothing_is_made() {
    let dir = TempDir::new("tls-given");
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["chat.example".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let expected = Fingerprint::of(cert.der()).to_string();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let state = TempDir::new("tls-given-state");
    let server = ServerProcess::start_with(
        Command::new(bin_path("lanchat-server"))
            .args(["--listen", "127.0.0.1:0", "--no-announce", "--tls-cert"])
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .env("XDG_STATE_HOME", state.path()),
    );
    assert_eq!(server.fingerprint(), expected);
    let (c, _) = TestClient::hello_tls(server.addr, &expected, "given").await;
    assert_eq!(fingerprint_presented(&c), expected);
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "no certificate made"
    );
}

#[test]
fn a_corrupt_or_half_pair_exits_2_with_one_line_and_is_left_alone() {
    let data = TempDir::new("tls-corrupt");
    let data_arg = data.path().to_str().unwrap();
    let mut first = ServerProcess::start(&["--data-dir", data_arg]);
    first.stop();
    let tls = data.path().join("tls");
    let cert = std::fs::read(tls.join("cert.pem")).unwrap();
    let corrupt = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
    std::fs::write(tls.join("key.pem"), corrupt).unwrap();
    let state = TempDir::new("tls-corrupt-state");
    let check = |what: &str| {
        let out = lanchat_tests::run_server_to_exit(&["--data-dir", data_arg], state.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        // The log may say what was done before (the data directory opened): the error is one
        // line of its own, the last.
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("lanchat-server: "))
            .collect();
        assert_eq!(errors.len(), 1, "{what}: {stderr}");
        assert_eq!(stderr.lines().last(), Some(errors[0]), "{what}: {stderr}");
        assert!(
            errors[0].starts_with("lanchat-server: TLS: "),
            "{what}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{what}");
        errors[0].to_owned()
    };
    let stderr = check("corrupt key");
    assert!(stderr.contains("key.pem"), "{stderr}");
    assert_eq!(std::fs::read(tls.join("key.pem")).unwrap(), corrupt);
    assert_eq!(std::fs::read(tls.join("cert.pem")).unwrap(), cert);

    std::fs::remove_file(tls.join("cert.pem")).unwrap();
    let stderr = check("half a pair");
    assert!(stderr.contains("cert.pem"), "{stderr}");
    assert!(!tls.join("cert.pem").exists(), "never replaced");
}

#[tokio::test]
async fn a_stalled_handshake_holds_its_slot_until_the_hello_timeout_only() {
    let server = ServerProcess::start(&["--hello-timeout", "1", "--max-per-ip", "1"]);
    let mut stalled = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(server.addr))
        .await
        .unwrap()
        .unwrap();
    // The first byte of a TLS handshake, and then nothing.
    stalled.write_all(&[0x16]).await.unwrap();

    // Admission came before the handshake: the stalled connection holds the only slot.
    let mut second = TestClient::connect(server.addr).await;
    let refused = second.read_to_close().await;
    assert_eq!(
        refused.first().map(|f| f["code"].clone()),
        Some(json!("server_full")),
        "{refused:?}"
    );

    // The hello timeout ends it: the server closes without a word (there is no TLS session to
    // say one in).
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, stalled.read(&mut buf))
        .await
        .expect("closed by the hello timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(stalled);

    // And the slot is free again.
    let (mut c, _) = TestClient::hello(server.addr, "after").await;
    c.sync().await;
}

/// The time from spawn to the `tls_sha256` line, the certificate made or loaded; printed for
/// the report (not asserted: a loaded machine makes any figure meaningless).
#[test]
fn start_time_with_and_without_a_kept_certificate() {
    let mut made = Vec::new();
    let mut loaded = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..5 {
        let state = TempDir::new("tls-time");
        let start = |args: &[&str]| {
            let started = Instant::now();
            let server = ServerProcess::start_with(
                Command::new(bin_path("lanchat-server"))
                    .args(["--listen", "127.0.0.1:0", "--no-announce"])
                    .args(args)
                    .env("XDG_STATE_HOME", state.path()),
            );
            let took = started.elapsed();
            drop(server);
            took
        };
        made.push(start(&[]));
        loaded.push(start(&[]));
        plain.push(start(&["--no-tls"]));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "start to ready (median of 5): certificate made {:?}, loaded {:?}, --no-tls {:?}",
        median(&mut made),
        median(&mut loaded),
        median(&mut plain)
    );
}
