//! The web transport (issue 18): one port for HTTP, WebSocket, TLS and JSON lines; the web app's
//! pages and their headers; `/ws` carrying protocol lines between WebSocket and TCP members;
//! every limit of a TCP session over WebSocket; the Origin rule; RFC 6455 rule breakers;
//! `--no-web` and `--require-tls`.

use std::net::SocketAddr;
use std::time::Duration;

use lanchat_tests::ws::{self, Frame, Response, OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT};
use lanchat_tests::{workspace_root, ServerProcess, TestClient, WAIT};
use serde_json::{json, Value};
use tokio::io::DuplexStream;
use tokio::net::TcpStream;

type WsClient = TestClient<DuplexStream>;

async fn tcp(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// One HTTP request over plain TCP.
async fn http(addr: SocketAddr, request: &[u8]) -> Response {
    ws::http_request(&mut tcp(addr).await, request).await
}

/// A WebSocket to `/ws` (no Origin, as a non-browser client), as raw frames.
async fn ws_raw(addr: SocketAddr) -> ws::WsConn<TcpStream> {
    let host = addr.to_string();
    ws::upgrade(tcp(addr).await, &host, None)
        .await
        .unwrap_or_else(|r| panic!("upgrade refused: {} {:?}", r.status, r.body))
}

/// A WebSocket member that has said hello, driven as lines.
async fn ws_hello(addr: SocketAddr, nick: &str) -> (WsClient, ws::Ended) {
    let (mut c, ended) = ws::lines(ws_raw(addr).await, nick);
    let welcome = c.request(json!({"type": "hello", "nick": nick})).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (c, ended)
}

fn web_file(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("server/web").join(name)).expect("a web app file")
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' \
                   data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

fn assert_page(r: &Response, content_type: &str, body: &[u8]) {
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(content_type));
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body, body, "the built-in file");
}

#[tokio::test]
async fn one_port_serves_the_web_app_with_its_headers_and_http_errors() {
    let server = ServerProcess::start(&[]);
    let (addr, host) = (server.addr, server.addr.to_string());
    let page = http(addr, &ws::get("/", &host)).await;
    assert_page(&page, "text/html; charset=utf-8", &web_file("index.html"));
    for (path, content_type, file) in [
        ("/app.js", "text/javascript; charset=utf-8", "app.js"),
        ("/app.css", "text/css; charset=utf-8", "app.css"),
        (
            "/favicon.svg",
            "image/svg+xml; charset=utf-8",
            "favicon.svg",
        ),
    ] {
        let r = http(addr, &ws::get(path, &host)).await;
        assert_page(&r, content_type, &web_file(file));
    }
    let head = http(
        addr,
        format!("HEAD / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        head.header("content-length"),
        Some(web_file("index.html").len().to_string().as_str())
    );
    assert_eq!(http(addr, &ws::get("/etc/passwd", &host)).await.status, 404);
    let post = http(addr, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
    assert_eq!(
        http(addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            .await
            .status,
        400
    );
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let r = http(addr, big.as_bytes()).await;
    assert_eq!(r.status, 431);
    assert_eq!(
        r.header("content-security-policy"),
        Some(CSP),
        "on errors too"
    );
    // /ws without an upgrade says what it is.
    assert_eq!(http(addr, &ws::get("/ws", &host)).await.status, 426);
    // JSON lines are still served on the same port, after all that.
    let (mut c, welcome) = TestClient::hello(addr, "plain").await;
    assert_eq!(welcome["nick"], "plain");
    c.sync().await;
}

#[tokio::test]
async fn websocket_and_tcp_members_chat_in_one_room() {
    let server = ServerProcess::start(&[]);
    let (mut ann, _) = ws_hello(server.addr, "ann").await;
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    ann.expect_event("join").await;
    let ok = ann.request(json!({"type":"join","room":"rust"})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    let ok = bob.request(json!({"type":"join","room":"rust"})).await;
    assert_eq!(ok["members"].as_array().unwrap().len(), 2, "{ok}");
    assert_eq!(ann.expect_event("join").await["nick"], "bob");
    // Text with every kind of character a line may carry, both ways.
    let text = "über \"quotes\" \\ and a\nnew line 👋";
    let sent = ann
        .request(json!({"type":"say","room":"rust","text":text}))
        .await;
    assert_eq!(sent["type"], "ok");
    let got = bob.expect_event("message").await;
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some("ann"), Some(text))
    );
    assert_eq!(got["id"], sent["id"]);
    bob.request(json!({"type":"say","room":"rust","text":"from tcp"}))
        .await;
    let got = ann.expect_event("message").await;
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some("bob"), Some("from tcp"))
    );
    // A DM and a history reply (a long line) over WebSocket too.
    bob.request(json!({"type":"dm","to":"ann","text":"psst"}))
        .await;
    assert_eq!(ann.expect_event("direct").await["text"], "psst");
    let history = ann
        .request(json!({"type":"history","room":"rust","limit":10}))
        .await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        2,
        "{history}"
    );
    ann.assert_quiet().await;
    bob.assert_quiet().await;
}

/// A client that sends its hello in the same write as the upgrade request: the bytes read past
/// the request head are the session's first.
#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_read() {
    let server = ServerProcess::start(&[]);
    let hello = ws::encode(
        true,
        OP_TEXT,
        br#"{"type":"hello","id":1,"nick":"eager"}"#,
        true,
    );
    let host = server.addr.to_string();
    let conn = ws::upgrade_sending(tcp(server.addr).await, &host, None, &hello)
        .await
        .unwrap_or_else(|r| panic!("upgrade refused: {}", r.status));
    let (mut eager, _) = ws::lines(conn, "eager");
    let welcome = eager.recv().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["re"].as_i64()),
        (Some("welcome"), Some(1))
    );
    eager.sync().await;
}

#[tokio::test]
async fn https_and_wss_use_the_pinned_certificate() {
    let server = ServerProcess::start(&[]);
    let fingerprint = server.tls_sha256.clone().expect("TLS on by default");
    let host = format!("lanchat:{}", server.addr.port());
    let mut tls = TestClient::handshake(server.addr, &fingerprint)
        .await
        .expect("pinned handshake");
    let page = ws::http_request(&mut tls, &ws::get("/", &host)).await;
    assert_page(&page, "text/html; charset=utf-8", &web_file("index.html"));
    // wss:// from the page's own origin, https://.
    let tls = TestClient::handshake(server.addr, &fingerprint)
        .await
        .unwrap();
    let origin = format!("https://{host}");
    let conn = ws::upgrade(tls, &host, Some(&origin))
        .await
        .unwrap_or_else(|r| panic!("wss refused: {}", r.status));
    let (mut ann, _) = ws::lines(conn, "ann");
    let welcome = ann.request(json!({"type":"hello","nick":"ann"})).await;
    assert_eq!(welcome["type"], "welcome");
    let (mut bob, _) = TestClient::hello_tls(server.addr, &fingerprint, "bob").await;
    assert_eq!(ann.expect_event("join").await["nick"], "bob");
    bob.request(json!({"type":"say","room":"lobby","text":"over TLS"}))
        .await;
    assert_eq!(ann.expect_event("message").await["text"], "over TLS");
    // The plain http:// origin is not the page's own over TLS.
    let tls = TestClient::handshake(server.addr, &fingerprint)
        .await
        .unwrap();
    let refused = ws::upgrade(tls, &host, Some(&format!("http://{host}"))).await;
    assert_eq!(refused.err().map(|r| r.status), Some(403));
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    let server = ServerProcess::start(&["--web-origin", "http://intranet.example:8080"]);
    let host = server.addr.to_string();
    let refused = ws::upgrade(tcp(server.addr).await, &host, Some("http://evil.example"))
        .await
        .err()
        .expect("a foreign origin is refused");
    assert_eq!(refused.status, 403);
    // The page's own origin and a listed one are let in.
    for origin in [
        format!("http://{host}"),
        "http://intranet.example:8080".into(),
    ] {
        let conn = ws::upgrade(tcp(server.addr).await, &host, Some(&origin)).await;
        assert!(conn.is_ok(), "{origin} refused");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server.stderr_text().contains("foreign origin") {
        assert!(tokio::time::Instant::now() < deadline, "refusal not logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.stderr_text().contains("evil.example"));
}

#[tokio::test]
async fn an_overlong_message_gets_line_too_long_and_the_session_goes_on() {
    let server = ServerProcess::start(&["--max-line", "1024"]);
    let mut conn = ws_raw(server.addr).await;
    conn.writer
        .send_text(r#"{"type":"hello","id":1,"nick":"ann"}"#)
        .await
        .unwrap();
    let welcome = conn.reader.frame().await.unwrap();
    assert!(welcome.payload.starts_with(br#"{"type":"welcome""#));
    let too_long = |f: Frame| {
        let v: Value = serde_json::from_slice(&f.payload).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("error"), Some("line_too_long"))
        );
        assert!(v.get("re").is_none(), "{v}");
    };
    // One frame over the limit; then 1025 bytes in fragments with a ping between them.
    let big = format!(
        r#"{{"type":"say","room":"lobby","text":"{}"}}"#,
        "x".repeat(2000)
    );
    conn.writer.send_text(&big).await.unwrap();
    too_long(conn.reader.frame().await.unwrap());
    let part = "y".repeat(512);
    conn.writer
        .send(false, OP_TEXT, part.as_bytes())
        .await
        .unwrap();
    conn.writer.send(true, OP_PING, b"p").await.unwrap();
    conn.writer
        .send(false, OP_CONTINUATION, part.as_bytes())
        .await
        .unwrap();
    conn.writer.send(true, OP_CONTINUATION, b"z").await.unwrap();
    let pong = conn.reader.frame().await.unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (ws::OP_PONG, &b"p"[..])
    );
    too_long(conn.reader.frame().await.unwrap());
    // Exactly the limit is a line.
    let fill = 1024 - r#"{"type":"ping","id":2,"x":""}"#.len();
    let exact = format!(r#"{{"type":"ping","id":2,"x":"{}"}}"#, "w".repeat(fill));
    assert_eq!(exact.len(), 1024);
    conn.writer.send_text(&exact).await.unwrap();
    let ok: Value = serde_json::from_slice(&conn.reader.frame().await.unwrap().payload).unwrap();
    assert_eq!(
        (ok["type"].as_str(), ok["re"].as_i64()),
        (Some("ok"), Some(2)),
        "{ok}"
    );
}

#[tokio::test]
async fn flooding_over_websocket_ends_with_bye_flood_then_a_close() {
    let server = ServerProcess::start(&["--rate-burst", "2", "--rate-per-sec", "1"]);
    let mut conn = ws_raw(server.addr).await;
    conn.writer
        .send_text(r#"{"type":"hello","nick":"flooder"}"#)
        .await
        .unwrap();
    // As the TCP test does: 80 requests in one write.
    let mut all = Vec::new();
    for _ in 0..80 {
        let dm = br#"{"type":"dm","to":"flooder","text":"x"}"#;
        all.extend(ws::encode(true, OP_TEXT, dm, true));
    }
    conn.writer.send_raw(&all).await.unwrap();
    let (frames, code) = conn.reader.until_close().await;
    let lines: Vec<Value> = frames
        .iter()
        .map(|f| serde_json::from_slice(&f.payload).unwrap())
        .collect();
    let limited = lines.iter().filter(|f| f["code"] == "rate_limited").count();
    assert_eq!(limited, 50);
    let last = lines.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["reason"].as_str()),
        (Some("bye"), Some("flood"))
    );
    assert_eq!(code, 1000, "the close follows the bye");
    conn.reader.expect_eof().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_stops_reading_is_dropped_and_the_room_goes_on() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let (mut sender, _) = TestClient::hello(server.addr, "sender").await;
    let (mut fast, _) = ws_hello(server.addr, "fast").await;
    // The slow one registers over WebSocket, then never reads again.
    let mut slow = ws_raw(server.addr).await;
    slow.writer
        .send_text(r#"{"type":"hello","nick":"slow"}"#)
        .await
        .unwrap();
    sender.expect_event("join").await;
    sender.expect_event("join").await;
    fast.expect_event("join").await;

    crate::limits::sender_outlasts_a_slow_consumer(sender, fast, slow).await;
}

#[tokio::test]
async fn hello_timeout_and_ping_timeout_over_websocket() {
    let server = ServerProcess::start(&["--hello-timeout", "1", "--ping-interval", "1"]);
    // Upgraded, then silent: the hello timeout counts from the TCP accept.
    let mut quiet = ws_raw(server.addr).await;
    let (frames, code) = quiet.reader.until_close().await;
    let bye: Value = serde_json::from_slice(&frames.last().unwrap().payload).unwrap();
    assert_eq!(
        (bye["type"].as_str(), bye["reason"].as_str()),
        (Some("bye"), Some("hello_timeout"))
    );
    assert_eq!(code, 1000);
    quiet.reader.expect_eof().await;
    // Registered, then never answering the protocol's ping (a WebSocket ping is no answer).
    let mut mute = ws_raw(server.addr).await;
    mute.writer
        .send_text(r#"{"type":"hello","nick":"mute"}"#)
        .await
        .unwrap();
    let ping = loop {
        let f = mute.reader.frame().await.expect("frames until the ping");
        let v: Value = serde_json::from_slice(&f.payload).unwrap();
        if v["type"] == "ping" {
            break v;
        }
    };
    assert_eq!(ping, json!({"type":"ping"}));
    mute.writer.send(true, OP_PING, b"").await.unwrap();
    let (frames, code) = mute.reader.until_close().await;
    let bye: Value = serde_json::from_slice(&frames.last().unwrap().payload).unwrap();
    assert_eq!(
        (bye["type"].as_str(), bye["reason"].as_str()),
        (Some("bye"), Some("ping_timeout"))
    );
    assert_eq!(code, 1000);
}

#[tokio::test]
async fn rfc_6455_rule_breakers_are_closed_with_their_code() {
    let server = ServerProcess::start(&[]);
    let hello = br#"{"type":"hello","nick":"x"}"#;
    for (frame, code) in [
        (ws::encode(true, OP_TEXT, hello, false), 1002),
        (ws::encode(true, OP_BINARY, hello, true), 1003),
        (ws::encode(true, OP_TEXT, b"\xff\xfe", true), 1007),
    ] {
        let mut conn = ws_raw(server.addr).await;
        conn.writer.send_raw(&frame).await.unwrap();
        let (before, got) = conn.reader.until_close().await;
        assert!(before.is_empty(), "{before:?}");
        assert_eq!(got, code);
        conn.reader.expect_eof().await;
    }
    // A client's close is answered with its code, and the member leaves.
    let (mut bob, _) = TestClient::hello(server.addr, "bob").await;
    let mut conn = ws_raw(server.addr).await;
    conn.writer
        .send_text(r#"{"type":"hello","nick":"ann"}"#)
        .await
        .unwrap();
    assert_eq!(bob.expect_event("join").await["nick"], "ann");
    conn.writer
        .send(true, ws::OP_CLOSE, &1001u16.to_be_bytes())
        .await
        .unwrap();
    let (_, code) = conn.reader.until_close().await;
    assert_eq!(code, 1001);
    conn.reader.expect_eof().await;
    assert_eq!(bob.expect_event("quit").await["nick"], "ann");
}

#[tokio::test]
async fn no_web_makes_a_get_a_bad_json_line() {
    let server = ServerProcess::start(&["--no-web"]);
    let mut c = TestClient::connect(server.addr).await;
    c.send_raw(&ws::get("/", &server.addr.to_string())).await;
    let error = c.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("bad_json"))
    );
}

#[tokio::test]
async fn require_tls_answers_plain_http_with_a_403_and_serves_https() {
    let server = ServerProcess::start(&["--require-tls"]);
    let host = server.addr.to_string();
    let r = http(server.addr, &ws::get("/", &host)).await;
    assert_eq!(r.status, 403);
    assert!(
        String::from_utf8_lossy(&r.body).contains("https://"),
        "{r:?}"
    );
    let refused = ws::upgrade(tcp(server.addr).await, &host, None).await;
    assert_eq!(refused.err().map(|r| r.status), Some(403));
    let fingerprint = server.tls_sha256.clone().unwrap();
    let mut tls = TestClient::handshake(server.addr, &fingerprint)
        .await
        .unwrap();
    let page = ws::http_request(&mut tls, &ws::get("/", &host)).await;
    assert_eq!(page.status, 200);
}
